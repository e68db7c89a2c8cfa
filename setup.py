"""pip install of the pure-Python core (no ROS needed): `pip install .` gives the `coop-ros` CLI.

In a ROS 2 workspace the package is built by colcon through CMakeLists.txt (ament_cmake), which
also generates the messages in msg/; this file is not used there.
"""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
core = [line.strip() for line in (here / "requirements" / "core.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")]

setup(
    name="coop_ros",
    version="0.1.0",
    description="Co-op novel-object 6D pose estimation (core library, CLI and ROS 2 node)",
    packages=find_packages(include=["coop_ros", "coop_ros.*"]),
    python_requires=">=3.10",
    install_requires=core,
    entry_points={"console_scripts": ["coop-ros = coop_ros.cli:main"]},
    data_files=[("share/ament_index/resource_index/packages", ["resource/coop_ros"]),
                ("share/coop_ros", ["package.xml"])],
)
