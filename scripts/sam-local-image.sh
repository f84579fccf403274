#!/usr/bin/env bash
# Build a Lambda-like python3.12 image for `sam local invoke --invoke-image`, from nothing but the
# machine's own apt mirror, its CPython 3.12 and the package index (no container registry needed):
#
#   a debootstrap rootfs of this machine's Debian/Ubuntu release (only the libraries the Python
#   build links against), that Python in /var/lang, awslambdaric + boto3 in /var/runtime, a
#   /var/runtime/bootstrap running `python3.12 -m awslambdaric $_HANDLER`, then `docker import`.
#
# The image is named after a hash of what goes into it (this script, the Python build, the
# release), so an unchanged recipe is built once and kept: a second run prints the name and exits.
# SAM names its emulator image "<repository>:rapid-x86_64" and reuses it, so every recipe gets a
# repository of its own; images of older recipes (and their emulator images) are removed.
#
# Usage: scripts/sam-local-image.sh [--print-name]
#   prints the image name (repository:tag) as its last line of stdout.
#   --print-name   only print the name this recipe would have; build nothing.
# Env: PYTHON312 (a python3.12 built for this machine, e.g. pyenv's), SAM_LOCAL_WORK (scratch
#   directory, default out/sam-local/image-build), DEBIAN_MIRROR, DEBIAN_SUITE (defaults: the
#   machine's apt sources and release).
# Needs: root (debootstrap), docker, debootstrap, dpkg.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

die() { echo "sam-local-image: FAIL: $*" >&2; exit 1; }
note() { echo "sam-local-image: $*" >&2; }

PRINT_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --print-name) PRINT_ONLY=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument $arg" ;;
  esac
done

# --- the Python to put inside ------------------------------------------------------------------
# As scripts/check-build.sh finds it: $PYTHON312, python3.12 on PATH, then pyenv's 3.12 builds.
is_py312() { [[ -x "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }
PY312=""
candidates=("${PYTHON312:-}" "$(command -v python3.12 || true)")
if command -v pyenv >/dev/null; then
  candidates+=($(ls -d "$(pyenv root)"/versions/3.12*/bin/python3.12 2>/dev/null | sort -rV))
fi
for c in "${candidates[@]}"; do
  if [[ -n "$c" ]] && is_py312 "$c"; then PY312="$c"; break; fi
done
[[ -n "$PY312" ]] || die "no working python3.12 found (put one on PATH or set PYTHON312=...)"
# A virtual environment's interpreter: take the installation it was made from.
PREFIX="$("$PY312" -c 'import sys; print(sys.base_prefix)')"
PYVERSION="$("$PY312" -c 'import platform; print(platform.python_version())')"
case "$PREFIX" in
  /usr|/usr/local|/) die "python3.12 at $PY312 is installed in $PREFIX among the system's files; the offline image needs a self-contained build (pyenv install 3.12), or use the official image (SAM_LOCAL_IMAGE=official)" ;;
esac
[[ -x "$PREFIX/bin/python3.12" ]] || die "no $PREFIX/bin/python3.12 (from $PY312)"

# --- the release and its mirror ----------------------------------------------------------------
# shellcheck disable=SC1091
. /etc/os-release
SUITE="${DEBIAN_SUITE:-${VERSION_CODENAME:-}}"
[[ -n "$SUITE" ]] || die "cannot tell this machine's release (no VERSION_CODENAME in /etc/os-release); set DEBIAN_SUITE"
MIRROR="${DEBIAN_MIRROR:-}"
if [[ -z "$MIRROR" ]]; then
  # The first source that carries the release itself (not -security/-updates): one-line or deb822.
  MIRROR="$(
    {
      cat /etc/apt/sources.list 2>/dev/null | awk -v s="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == s) { u = $(i - 1); if (u !~ /^\[/) print u } }'
      for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        awk -v s="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
          { uris = ""; ok = 0
            for (i = 1; i <= NF; i++) {
              if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); uris = $i }
              if ($i ~ /^Suites:/) { n = split($i, w, /[ \t]+/); for (j = 2; j <= n; j++) if (w[j] == s) ok = 1 }
            }
            if (ok && uris != "") { split(uris, u, /[ \t]+/); print u[1] } }' "$f"
      done
      for f in /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        awk -v s="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == s) { u = $(i - 1); if (u !~ /^\[/) print u } }' "$f"
      done
    } | head -1
  )"
fi
[[ -n "$MIRROR" ]] || die "no apt source for $SUITE in /etc/apt/sources.list*; set DEBIAN_MIRROR"

# --- the name: a hash of the recipe ------------------------------------------------------------
HASH="$({
  cat "$0"
  echo "$PREFIX $PYVERSION $SUITE"
  "$PY312" -c 'import sys, sysconfig; print(sys.version); print(sysconfig.get_config_var("CONFIG_ARGS"))'
} | sha256sum | cut -c1-12)"
REPO="newsletter-lambda-python3.12-$HASH"
IMAGE="$REPO:latest"
if (( PRINT_ONLY )); then echo "$IMAGE"; exit 0; fi

command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed): start it (scripts/docker-engine.sh start)"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  note "kept: $IMAGE (built earlier from the same recipe)"
  echo "$IMAGE"
  exit 0
fi

[[ "$(id -u)" == 0 ]] || die "building the image needs root (debootstrap); or use the official image (SAM_LOCAL_IMAGE=official)"
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
command -v dpkg >/dev/null || die "dpkg not found: the offline image is built on Debian or Ubuntu only"

# --- the libraries the Python build links against, as packages ---------------------------------
SITE="$PREFIX/lib/python3.12"
libs="$(
  { ldd "$PREFIX/bin/python3.12"; for so in "$SITE"/lib-dynload/*.so; do
      case "$so" in *_tkinter*) continue ;; esac   # no Tk in a Lambda function
      ldd "$so"; done; } 2>/dev/null | awk '/=>/ && $3 ~ /^\// { print $3 }' | sort -u | grep -v "^$PREFIX/" || true
)"
# One dpkg -S for every spelling of every path (usrmerge: /lib/x is /usr/lib/x).
owners="$(for lib in $libs; do printf '%s\n%s\n%s\n' "$lib" "$(realpath "$lib")" "/usr$lib"; done | sort -u \
  | xargs -r dpkg -S 2>/dev/null || true)"
packages="ca-certificates"
missing=""
for lib in $libs; do
  pkg="$(awk -v a="$lib" -v b="$(realpath "$lib")" -v c="/usr$lib" \
    '{ p = $NF } p == a || p == b || p == c { sub(/:.*/, "", $1); print $1; exit }' <<<"$owners")"
  if [[ -n "$pkg" ]]; then packages="$packages,$pkg"; else missing="$missing $lib"; fi
done
packages="$(tr ',' '\n' <<<"$packages" | sort -u | paste -sd, -)"

WORK="${SAM_LOCAL_WORK:-$ROOT/out/sam-local/image-build}"
ROOTFS="$WORK/rootfs"
rm -rf "$ROOTFS"
mkdir -p "$WORK"
cleanup() { rm -rf "$ROOTFS"; }
trap cleanup EXIT

started=$SECONDS
note "building $IMAGE: $SUITE from $MIRROR, Python $PYVERSION from $PREFIX"
step() { note "$1 ($((SECONDS - started)) s)"; }
step "debootstrap (minbase + $packages)"
if ! debootstrap --variant=minbase --include="$packages" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -20 "$WORK/debootstrap.log" >&2
  die "debootstrap failed (log: $WORK/debootstrap.log)"
fi

step "copying Python into /var/lang"
mkdir -p "$ROOTFS/var/lang"
tar -C "$PREFIX" \
  --exclude='./lib/python3.12/test' --exclude='./lib/python3.12/idlelib' --exclude='./lib/python3.12/tkinter' \
  --exclude='./lib/python3.12/turtledemo' --exclude='./lib/python3.12/lib-dynload/_tkinter*' \
  --exclude='./lib/python3.12/site-packages/*' --exclude='*.a' --exclude='*.opt-1.pyc' --exclude='*.opt-2.pyc' \
  -cf - . | tar -C "$ROOTFS/var/lang" -xf -
# The interpreter finds libpython through its RUNPATH: the build's own prefix.
mkdir -p "$ROOTFS$(dirname "$PREFIX")"
ln -sfn /var/lang "$ROOTFS$PREFIX"
ln -sfn /var/lang/bin/python3.12 "$ROOTFS/usr/local/bin/python3.12"
ln -sfn /var/lang/bin/python3.12 "$ROOTFS/usr/local/bin/python3"

step "pip install --target /var/runtime awslambdaric boto3"
mkdir -p "$ROOTFS/var/runtime" "$ROOTFS/var/task" "$ROOTFS/opt"
if ! "$PREFIX/bin/python3.12" -m pip install --quiet --disable-pip-version-check --no-compile \
    --target "$ROOTFS/var/runtime" awslambdaric boto3 >"$WORK/pip.log" 2>&1; then
  tail -20 "$WORK/pip.log" >&2
  die "pip install failed (log: $WORK/pip.log)"
fi

# The official images' contract: /var/runtime/bootstrap starts the runtime interface client;
# /lambda-entrypoint.sh runs it under the emulator when no Lambda runtime API is given.
cat >"$ROOTFS/var/runtime/bootstrap" <<'SH'
#!/bin/sh
export PYTHONPATH="/var/task:/opt/python/lib/python3.12/site-packages:/opt/python:/var/runtime${PYTHONPATH:+:$PYTHONPATH}"
cd /var/task
exec /var/lang/bin/python3.12 -m awslambdaric "${_HANDLER:-$AWS_LAMBDA_FUNCTION_HANDLER}"
SH
cat >"$ROOTFS/lambda-entrypoint.sh" <<'SH'
#!/bin/sh
if [ $# -gt 0 ]; then export _HANDLER="$1"; fi
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec /var/rapid/aws-lambda-rie /var/runtime/bootstrap
fi
exec /var/runtime/bootstrap
SH
chmod 755 "$ROOTFS/var/runtime/bootstrap" "$ROOTFS/lambda-entrypoint.sh"
# Byte-compiled once here, not at every cold start (the standard library came with its own).
"$PREFIX/bin/python3.12" -m compileall -q -j 0 "$ROOTFS/var/runtime" >/dev/null 2>&1 || true
rm -rf "$ROOTFS/var/cache/apt/archives"/*.deb "$ROOTFS/var/lib/apt/lists"/* "$ROOTFS/usr/share/doc" "$ROOTFS/usr/share/man"

step "docker import"
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin' \
  --change 'ENV LD_LIBRARY_PATH=/var/lang/lib' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV TZ=:UTC' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
  --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'WORKDIR /var/task' \
  --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]' \
  --message "newsletter sam-local: $SUITE + Python $PYVERSION + awslambdaric" \
  - "$IMAGE" >/dev/null
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "docker import did not produce $IMAGE"

# Images of earlier recipes, and the emulator images SAM derived from them.
docker image ls --format '{{.Repository}}:{{.Tag}}' | grep '^newsletter-lambda-python3.12-' | grep -v "^$REPO:" \
  | xargs -r docker rmi >/dev/null 2>&1 || true

note "built $IMAGE in $((SECONDS - started)) s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
echo "$IMAGE"
