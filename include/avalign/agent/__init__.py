"""avalign.agent"""
