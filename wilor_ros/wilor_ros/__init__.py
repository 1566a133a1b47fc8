"""wilor_ros: real-time 3D hand reconstruction (WiLoR) for ROS 2.

Layout:
  wilor_ros.core   ROS-free: geometry, MANO, models, pre/post-processing, pipeline, backends
  wilor_ros.ros    the ROS 2 adapter: node, TF, markers, image conversion (imports rclpy)
  wilor_ros.tools  command line, export, synthetic assets, benchmarks, training, evaluation
"""

__version__ = "0.1.0"
