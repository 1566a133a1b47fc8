"""Model files on disk: which files exist and where they come from, ONNX files with external data,
ONNX Runtime sessions, restricted unpickling.
"""
