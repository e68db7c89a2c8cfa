#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run the test suite on CPU.
#   bash scripts/test.sh                  whole suite on ROS 2 Kilted (.venv), then the node tests
#                                         (test/test_ros_node_*.py) on ROS 2 Jazzy (.venv-jazzy)
#   bash scripts/test.sh FILE... [ARGS]   just those (Kilted); COOP_ROS_DISTRO=jazzy: on Jazzy
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# DDS traffic of the node tests stays on this machine and off other sessions' domains
# (domain ids 1-101: the ones whose ports never collide, ROS 2's "Domain ID" guide).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 101) + 1 ))}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# Arguments naming test files / node ids run just those; otherwise the whole folder test/.
targets=(test)
for a in "$@"; do [[ -e "${a%%::*}" ]] && targets=(); done
distro="${COOP_ROS_DISTRO:-kilted}"
if [ "${#targets[@]}" -eq 0 ]; then     # chosen files: one distribution
  if [ "$distro" = jazzy ]; then
    bash scripts/setup.sh --jazzy
    COOP_ROS_TEST_CAMERA_QOS="${COOP_ROS_TEST_CAMERA_QOS:-reliable}" \
      exec "$ROOT/.venv-jazzy/bin/python" -m pytest -q -p no:cacheprovider "$@"
  fi
  bash scripts/setup.sh
  exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
fi
bash scripts/setup.sh --jazzy
log1="$(mktemp)"; log2="$(mktemp)"
trap 'rm -f "$log1" "$log2"' EXIT
set +e
echo "== ROS 2 Kilted (rclpy $("$ROOT/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ros-rclpy"))')): the whole suite"
"$ROOT/.venv/bin/python" -m pytest test -q -p no:cacheprovider "$@" 2>&1 | tee "$log1"
rc1=${PIPESTATUS[0]}
echo "== ROS 2 Jazzy (rclpy $("$ROOT/.venv-jazzy/bin/python" -c 'import importlib.metadata as m; print(m.version("ros-rclpy"))')): the node tests"
# Jazzy's Fast DDS 2.14 lost best-effort 640x480 images between processes here (see
# test/conftest.py): the tests that send images across processes subscribe them reliable.
COOP_ROS_TEST_CAMERA_QOS=reliable \
  "$ROOT/.venv-jazzy/bin/python" -m pytest test/test_ros_node_*.py -q -p no:cacheprovider "$@" 2>&1 | tee "$log2"
rc2=${PIPESTATUS[0]}
set -e
count() { tail -n 3 "$1" | grep -oE "[0-9]+ $2" | tail -1 | grep -oE "^[0-9]+" || echo 0; }
passed=$(( $(count "$log1" passed) + $(count "$log2" passed) ))
failed=$(( $(count "$log1" failed) + $(count "$log2" failed) + $(count "$log1" error) + $(count "$log2" error) ))
skipped=$(( $(count "$log1" skipped) + $(count "$log2" skipped) ))
echo "kilted+jazzy: $passed passed, $failed failed, $skipped skipped"
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ]
