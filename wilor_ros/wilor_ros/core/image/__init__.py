"""The image side: detection (YOLO decoding, runners), external boxes, crops bit-exact with the
official demo (CPU and device), overlays and rendering.
"""
