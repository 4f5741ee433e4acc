"""avalign.describe"""
