"""Across frames: tracking with stable ids and side hysteresis, One Euro filtering, depth
correction, and TemporalHandPipeline which runs them around HandPipeline.
"""
