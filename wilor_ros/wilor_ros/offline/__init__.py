"""Offline processing of recordings (``wilor-ros process``): rosbag2 (sqlite3/MCAP) files,
videos and image folders in; an output bag, a ``hands.npz`` dataset and an overlay video out.

ROS-free: bags are read and written with ``rosbags`` (pure Python), the ``wilor_msgs`` types are
registered from their .msg files, and the message fields come from the same builders the node
uses (``ros/messages.py``, ``ros/teleop.py``, ``ros/tf.py``).

Modules, in the order one run uses them:
  bagtypes     the rosbags typestore with wilor_msgs, and the message classes for the builders
  calibration  ROS camera-calibrator YAML -> intrinsics (video and image-folder inputs)
  sources      bag / video / image-folder frames, decoded in a background thread
  store        per-hand results spilled to disk (memory stays bounded)
  smoothing    zero-lag two-sided smoothing (positions, and rotations on the quaternion sphere)
  sequence     whole-sequence tracks: majority side, gap filling, smoothing
  writers      output bag, hands.npz and overlay video, written under temporary names
  runner       ``process``: the passes, the progress bar and the skip summary
"""
