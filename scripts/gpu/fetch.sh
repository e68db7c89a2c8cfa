#!/usr/bin/env bash
# Run HERE (a machine with PyPI and apt), before a GPU session: collects what the GPU machine's
# image lacks into .gpu/ (git-ignored; name it in the device tool's `carry`):
#   .gpu/whl/  cp312 wheels of the core packages missing there (pins from requirements/core.txt;
#              torch, numpy, scipy, opencv, pillow, PyYAML, tqdm are in the image already)
#   .gpu/gl/   the GL / EGL loader packages (glvnd), unpacked there by scripts/gpu/session.sh
#   .gpu/shapes/NNN/NNN.obj  pybullet_data's 1000 procedurally generated shapes (TRAINING-DATA.md;
#              pybullet 3.2.7, zlib licence), training objects for `coop-ros train shapes --mesh-glob`
# Idempotent; ~20 MB in all (the device tool carries at most 64 MiB with the working tree).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
mkdir -p .gpu/whl .gpu/gl

pins=()
for name in trimesh moderngl glcontext roma; do
  line="$(grep -iE "^${name}==" requirements/core.txt)" || { echo "no pin for $name" >&2; exit 1; }
  pins+=("$line")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .gpu/whl "${pins[@]}"

if ! ls .gpu/gl/*.deb >/dev/null 2>&1; then
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/coop_apt_amd64)
  mkdir -p /tmp/coop_apt_amd64/partial
  apt-get "${o[@]}" update -qq
  (cd .gpu/gl && apt-get "${o[@]}" download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
if [[ ! -f .gpu/shapes/999/999.obj ]]; then
  tmp="$(mktemp -d)"
  "$PY" -m pip download -q --no-deps --only-binary=:all: pybullet==3.2.7 -d "$tmp"
  (cd "$tmp" && unzip -q pybullet-*.whl 'pybullet_data/random_urdfs/*.obj')
  mkdir -p .gpu/shapes && cp -r "$tmp"/pybullet_data/random_urdfs/. .gpu/shapes/
  rm -rf "$tmp"
fi
ls -l .gpu/whl .gpu/gl
echo ".gpu/shapes: $(ls .gpu/shapes | wc -l) shapes"
du -sh .gpu
