"""coop_ros: Co-op novel-object 6D pose estimation.

Conventions everywhere below ``coop_ros`` (the ROS layer ``coop_ros.ros`` converts at its edge):
metres; OpenCV camera axes (x right, y down, z forward); poses as 4x4 ``T_cam_obj`` float64
arrays (BOP ``cam_R_m2c`` / ``cam_t_m2c`` with t in metres); images ``(H, W, 3) uint8`` RGB.
Millimetres appear only where meshes and BOP datasets are read.
"""
from pkgutil import extend_path

# The generated message module coop_ros.msg may live in another directory (a venv's site-packages
# or a colcon install space) than this source package: make both parts one package.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
