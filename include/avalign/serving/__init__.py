"""avalign.serving"""
