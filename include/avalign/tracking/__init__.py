"""avalign.tracking"""
