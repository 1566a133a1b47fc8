"""wilor_ros: real-time 3D hand reconstruction (WiLoR) for ROS 2.

Layout:
  wilor_ros.core   ROS-free: geometry, MANO, models, pre/post-processing, pipeline, backends
  wilor_ros.ros    the ROS 2 adapter: node, TF, markers, image conversion (imports rclpy)
  wilor_ros.tools  command line, export, synthetic assets, benchmarks, training, evaluation
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:  # PEP 562 module attribute hook
    """Lazy public API: ``wilor_ros.load_reconstructor`` imports torch only when first used."""
    if name == "load_reconstructor":
        from wilor_ros.core.models.reconstructor import load_reconstructor

        return load_reconstructor
    raise AttributeError(f"module 'wilor_ros' has no attribute {name!r}")
