"""avalign.data"""
