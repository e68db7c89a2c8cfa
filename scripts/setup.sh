#!/usr/bin/env bash
# One set-up for both README commands (demo and tests). Idempotent: with nothing changed since the
# last run it only checks a stamp and returns in well under 10 s.
#   1. apt packages the renderer needs (EGL + Mesa) and the message build needs (cmake, g++),
#      installed only when missing and only when running as root;
#   2. .venv with Python 3.11 and the exact pins of requirements/dev.txt (torch==2.13.0 CPU);
#   3. the ROS wheels' CMake export files rewritten from the wheel builder's paths to this venv's;
#   4. message packages generated with rosidl into the venv: the test environment's missing
#      upstream packages (scripts/ros_interfaces/*) and coop_ros' own msg/;
#   5. the coop_ros core installed editable (source edits take effect without a rebuild).
# Steps 2-5 make .venv (ROS 2 Kilted, requirements/dev.txt); with --jazzy also .venv-jazzy (ROS 2
# Jazzy, requirements/jazzy.txt: the node tests run against both distributions). Each venv has its
# own stamp.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
cd "$ROOT"
log() { printf '[setup] %s\n' "$*" >&2; }

# ---- 1. system packages -------------------------------------------------------------------------
APT_PKGS=(libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 cmake g++ make)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "WARNING: missing system packages (${missing[*]}); run as root or: sudo apt-get install ${missing[*]}"
  fi
fi

# ---- one virtual environment: $1 = folder, $2 = requirements file ---------------------------------
# Skipped when a stamp of its inputs says nothing changed since the last run.
stamp_inputs() {
  cat scripts/setup.sh requirements/*.txt CMakeLists.txt package.xml setup.py msg/*.msg
  if [ -d scripts/ros_interfaces ]; then find scripts/ros_interfaces -type f | sort | xargs -r cat; fi
}
PY=""
find_python() {
  [ -n "$PY" ] && return 0
  for c in python3.11 "$HOME/.pyenv/versions/3.11.7/bin/python3.11" /usr/bin/python3.11; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
      PY="$("$c" -c 'import sys; print(sys.executable)')"; return 0
    fi
  done
  log "ERROR: Python 3.11 not found (the ROS 2 wheels are cp311)"; exit 1
}

venv_stamp() {  # the stamp a finished venv $1 with requirements $2 carries
  ( (stamp_inputs; echo "$2") | sha256sum | cut -d' ' -f1 )
}
venv_current() {  # true when venv $1 (requirements $2) is set up and nothing changed since
  [ -f "$1/.coop_ros_setup" ] && [ "$(cat "$1/.coop_ros_setup")" = "$(venv_stamp "$1" "$2")" ] \
    && [ -x "$1/bin/python" ]
}
venv_packages() {  # -- 2. venv + pinned packages ($1 = folder, $2 = requirements file)
  local VENV="$1" REQ="$2"
  find_python
  [ -x "$VENV/bin/python" ] || { log "creating $VENV with $PY"; "$PY" -m venv "$VENV"; }
  log "installing pinned packages ($REQ) into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$VENV/bin/python" -c "import torch, rclpy, cv2, moderngl" \
    || { log "ERROR: pinned packages did not install into $VENV"; exit 1; }
}
setup_venv() {  # steps 3-5 ($1 = folder, $2 = requirements file; its packages are installed)
  local VENV="$1" REQ="$2"
  local STAMP="$VENV/.coop_ros_setup" want
  want="$(venv_stamp "$VENV" "$REQ")"

  # -- 3. CMake paths of the ROS wheels
  local PYINC NPINC SITE
  PYINC="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  NPINC="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null \
    | xargs -0 -r sed -i \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" || true

  # -- 4. the core, editable
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    -e . --config-settings editable_mode=compat 2>&1 | grep -v "is ignored: it is neither" || true

  # -- 5. message packages
  SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  build_msgs() {  # $1 = source dir, $2 = name, extra cmake args after
    local src="$1" name="$2"; shift 2
    log "generating messages: $name ($VENV)"
    # from a clean build folder: an incremental build kept the typesupport of messages removed
    # from the package (vision_msgs' Classification after the renovation: undefined symbol)
    rm -rf "$VENV/build/$name"
    CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
      cmake -S "$src" -B "$VENV/build/$name" -DCMAKE_INSTALL_PREFIX="$VENV" \
        -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF "$@" >"$VENV/build/$name.log" 2>&1 \
      && PATH="$VENV/bin:$PATH" cmake --build "$VENV/build/$name" -j2 >>"$VENV/build/$name.log" 2>&1 \
      && cmake --install "$VENV/build/$name" >>"$VENV/build/$name.log" 2>&1 \
      || { log "ERROR: message generation of $name failed; see $VENV/build/$name.log"; tail -20 "$VENV/build/$name.log" >&2; exit 1; }
  }
  mkdir -p "$VENV/build"
  local d n
  for d in scripts/ros_interfaces/*/; do
    [ -f "$d/package.xml" ] || continue
    n="$(basename "$d")"
    # a real ROS install (or a wheel) that already provides the package wins
    "$VENV/bin/python" -c "import $n.msg" 2>/dev/null && [ ! -f "$VENV/build/$n.log" ] && continue
    build_msgs "$d" "$n"
  done
  build_msgs "$ROOT" coop_ros -DCOOP_ROS_INSTALL_PYTHON=OFF
  # The generated coop_ros/__init__.py in site-packages would shadow the source package; without it
  # site-packages/coop_ros is a plain directory that coop_ros/__init__.py adds to its __path__.
  # Its egg-info would make pip treat the generated files as the coop_ros distribution (and delete them
  # on the next editable install): the editable install above is the distribution.
  rm -f "$SITE/coop_ros/__init__.py"
  rm -rf "$SITE"/coop_ros-*.egg-info
  "$VENV/bin/python" -c "import coop_ros.msg" || { log "ERROR: coop_ros.msg does not import ($VENV)"; exit 1; }
  echo "$want" > "$STAMP"
  log "done ($VENV)"
}

# .venv; with --jazzy also the second ROS 2 distribution (Jazzy, LTS) for the node tests
venvs=(); reqs=()
want_venv() {  # $1 = folder, $2 = requirements file: queued unless up to date
  if venv_current "$1" "$2"; then log "up to date ($1)"; else venvs+=("$1"); reqs+=("$2"); fi
}
want_venv "$ROOT/.venv" requirements/dev.txt
[ "${1:-}" = "--jazzy" ] && want_venv "$ROOT/.venv-jazzy" requirements/jazzy.txt
if ((${#venvs[@]})); then
  find_python
  # the venvs' package installs (downloads, unpacking, byte-compiling) run at the same time, each
  # into its own folder; the steps that read the source tree (editable install, messages) run one
  # venv after the other
  pids=()
  for i in "${!venvs[@]}"; do venv_packages "${venvs[$i]}" "${reqs[$i]}" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || { log "ERROR: package installation failed"; exit 1; }; done
  for i in "${!venvs[@]}"; do setup_venv "${venvs[$i]}" "${reqs[$i]}"; done
fi
