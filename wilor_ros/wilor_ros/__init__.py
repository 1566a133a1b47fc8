"""wilor_ros: real-time 3D hand reconstruction (WiLoR) for ROS 2.

Layout (docs/architecture.md):
  wilor_ros.core     ROS-free runtime: hand/, image/, models/, backends/, temporal/, files/, pipeline
  wilor_ros.ros      the ROS 2 adapter: node, parameters, inputs, outputs (imports rclpy)
  wilor_ros.offline  recordings in, hand trajectories out (no ROS install needed)
  wilor_ros.tools    command line, export, synthetic assets, benchmarks, training, evaluation
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:  # PEP 562 module attribute hook
    """Lazy public API: ``wilor_ros.load_reconstructor`` imports torch only when first used."""
    if name == "load_reconstructor":
        from wilor_ros.core.models.reconstructor import load_reconstructor

        return load_reconstructor
    raise AttributeError(f"module 'wilor_ros' has no attribute {name!r}")
