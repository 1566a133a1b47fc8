"""The hand: MANO model and constants, rotations, camera geometry (crop camera to real intrinsics)
and the teleoperation wrist frame.
"""
