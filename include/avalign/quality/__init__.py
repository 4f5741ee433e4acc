"""avalign.quality"""
