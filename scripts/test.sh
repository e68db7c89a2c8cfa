#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run the whole test suite on CPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# DDS traffic of the node tests stays on this machine and off other sessions' domains.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# Arguments naming test files / node ids run just those; otherwise the whole folder test/.
targets=(test)
for a in "$@"; do [[ -e "${a%%::*}" ]] && targets=(); done
exec "$ROOT/.venv/bin/python" -m pytest "${targets[@]}" -q -p no:cacheprovider "$@"
