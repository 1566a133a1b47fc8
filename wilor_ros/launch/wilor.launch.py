"""Launch the hand reconstruction node (and optionally RViz) on a camera.

    ros2 launch wilor_ros wilor.launch.py image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info model_dir:=/path/to/models use_rviz:=true

Every argument is listed with `ros2 launch wilor_ros wilor.launch.py --show-args`.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# (name, default, description); defaults that are paths are filled in below
ARGUMENTS = (
    (
        "image_topic",
        "/camera/color/image_raw",
        "colour image topic (raw; '<topic>/compressed' when compressed)",
    ),
    ("camera_info_topic", "/camera/color/camera_info", "sensor_msgs/CameraInfo of that camera"),
    ("image_transport", "raw", "'raw' (sensor_msgs/Image) or 'compressed' (sensor_msgs/CompressedImage)"),
    ("depth_topic", "/camera/aligned_depth_to_color/image_raw", "depth image aligned to the colour image"),
    ("use_depth", "false", "correct hand distances from the aligned depth image"),
    ("backend", "onnxruntime", "reconstructor runtime: pytorch | onnxruntime | tensorrt"),
    ("device", "cpu", "cpu | cuda | cuda:N"),
    ("precision", "fp32", "fp32 | fp16 | bf16 (fp16/bf16 need a GPU)"),
    ("model_dir", "", "folder with the model files (default: the package's share/wilor_ros/models)"),
    ("namespace", "", "namespace of the node and its topics"),
    ("frame_prefix", "", "prefix of the TF frame names, e.g. 'cam1/'"),
    ("params_file", "", "parameter YAML (default: the package's config/wilor.yaml)"),
    ("use_rviz", "false", "start RViz with the hand view (in the node's namespace)"),
    (
        "use_shm_profile",
        "false",
        "run the node and RViz with config/fastdds_large_images.xml (Fast DDS shared memory for "
        "large images; give the camera driver the same profile, see README 'On a robot')",
    ),
)


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("wilor_ros")
    defaults = {
        "model_dir": PathJoinSubstitution([share, "models"]),
        "params_file": PathJoinSubstitution([share, "config", "wilor.yaml"]),
    }
    profile = PathJoinSubstitution([share, "config", "fastdds_large_images.xml"])
    declared = [
        DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=description)
        for name, default, description in ARGUMENTS
    ]
    arg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}

    node = Node(
        package="wilor_ros",
        executable="hand_reconstruction_node",
        name="hand_reconstruction",
        namespace=arg["namespace"],
        output="screen",
        parameters=[
            arg["params_file"],
            {
                "image_transport": arg["image_transport"],
                "use_depth": arg["use_depth"],
                "backend": arg["backend"],
                "device": arg["device"],
                "precision": arg["precision"],
                "model_dir": arg["model_dir"],
                "frame_prefix": arg["frame_prefix"],
            },
        ],
        remappings=[
            ("image", arg["image_topic"]),
            ("image/compressed", [arg["image_topic"], "/compressed"]),
            ("camera_info", arg["camera_info_topic"]),
            ("depth", arg["depth_topic"]),
        ],
    )
    # RViz's displays name relative topics ('markers', 'debug_image'): started in the node's
    # namespace they resolve to the node's topics (/cam1/markers with namespace:=cam1)
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="wilor_rviz",
        namespace=arg["namespace"],
        arguments=["-d", PathJoinSubstitution([share, "config", "wilor.rviz"])],
        condition=IfCondition(arg["use_rviz"]),
    )
    shm = SetEnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE", profile, condition=IfCondition(arg["use_shm_profile"])
    )
    return LaunchDescription([*declared, shm, node, rviz])
