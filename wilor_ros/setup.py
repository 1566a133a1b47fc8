"""ament_python package definition (also installable with pip, see scripts/setup.sh)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "wilor_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", ["models/README.md"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="wilor_ros maintainers",
    maintainer_email="maintainers@wilor-ros.dev",
    description="Real-time 3D hand reconstruction (WiLoR) for ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "hand_reconstruction_node = wilor_ros.ros.node:main",
            "wilor-ros = wilor_ros.tools.cli:main",
        ],
    },
)
