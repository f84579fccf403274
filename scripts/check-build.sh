#!/usr/bin/env bash
# Build with `sam build`, then prove each built function can import its handler the way Lambda
# would: a clean python3.12 with only boto3 (what the runtime provides), the artifact directory
# as the working directory, and the function's environment from template.yaml (dummy values).
# Also checks that the Jinja2 templates were packed into PublishFunction as real files.
#
# Usage: scripts/check-build.sh [--no-build]
#   --no-build   reuse .aws-sam/build from an earlier run (only the import checks run).
# Env: SAM (sam binary), PYTHON312 (a python3.12 interpreter), BOTO3_SPEC (default "boto3").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "check-build: unknown argument $arg" >&2; exit 2 ;;
  esac
done

die() { echo "check-build: FAIL: $*" >&2; exit 1; }
note() { echo "check-build: $*"; }

# --- tools -------------------------------------------------------------------------------------
SAM="${SAM:-}"
if [[ -z "$SAM" ]]; then
  if [[ -x "$ROOT/.venv-sam/bin/sam" ]]; then SAM="$ROOT/.venv-sam/bin/sam"
  elif command -v sam >/dev/null; then SAM="$(command -v sam)"
  else die "sam not found (expected .venv-sam/bin/sam, or set SAM=...)"; fi
fi
# sam's own interpreter parses the template (it has a loader for the !Ref/!Sub short forms).
SAM_PY="$(dirname "$SAM")/python"
[[ -x "$SAM_PY" ]] || SAM_PY="$(head -1 "$SAM" | sed 's/^#!//')"
"$SAM_PY" -c "import samcli.yamlhelper" 2>/dev/null || die "cannot import samcli with $SAM_PY"

# A pyenv shim named python3.12 may exist and still refuse to run, so each candidate is tried.
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
if [[ -n "${PYTHON312:-}" && "$PY312" != "$PYTHON312" ]]; then die "PYTHON312=$PYTHON312 is not a working Python 3.12"; fi

export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

# --- sources -----------------------------------------------------------------------------------
shopt -s nullglob
src_templates=(templates/*.j2)
(( ${#src_templates[@]} > 0 )) || die "no Jinja2 templates in templates/*.j2"
[[ -L functions/newsletter/templates || -d functions/newsletter/templates ]] \
  || die "functions/newsletter/templates is missing (it should be a symlink to ../../templates)"
[[ "$(cd functions/newsletter/templates && pwd -P)" == "$(cd templates && pwd -P)" ]] \
  || die "functions/newsletter/templates does not lead to the top-level templates/"

# --- build -------------------------------------------------------------------------------------
mkdir -p .aws-sam
if (( BUILD )); then
  note "sam build (python: $PY312)"
  # No HTTPS_PROXY trick here: pip, run by sam build, needs the package index.
  if ! PATH="$(dirname "$PY312"):$PATH" "$SAM" build >.aws-sam/check-build.log 2>&1; then
    tail -40 .aws-sam/check-build.log >&2
    die "sam build failed (full log: .aws-sam/check-build.log)"
  fi
fi
[[ -f .aws-sam/build/template.yaml ]] || die "no .aws-sam/build/template.yaml: run without --no-build"

# --- functions and their environment from the template -----------------------------------------
# One line per function: LogicalId <TAB> handler <TAB> NAME=value <TAB> NAME=value ...
functions_tsv="$("$SAM_PY" - template.yaml <<'PY'
import sys
from samcli.yamlhelper import yaml_parse

t = yaml_parse(open(sys.argv[1]).read())
params = t.get("Parameters", {})
glob = t.get("Globals", {}).get("Function", {})

def dummy(name, value):
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"} and "Default" in params.get(value["Ref"], {}):
        return str(params[value["Ref"]]["Default"])
    if name.endswith("QUEUE_URL"):
        return f"https://sqs.us-east-1.amazonaws.com/123456789012/dummy-{name.lower()}"
    if name.endswith("_URL"):
        return f"https://example.invalid/{name.lower()}"
    if name.endswith(("ADDRESS", "MAILTO")):
        return "dummy@example.invalid"
    if name.endswith("PARAMETER"):
        return f"/dummy/{name.lower()}"
    return f"dummy-{name.lower().replace('_', '-')}"

for logical, res in t.get("Resources", {}).items():
    if res.get("Type") != "AWS::Serverless::Function":
        continue
    props = res.get("Properties", {})
    handler = props.get("Handler") or glob.get("Handler")
    env = dict(glob.get("Environment", {}).get("Variables", {}))
    env.update(props.get("Environment", {}).get("Variables", {}))
    cells = [logical, handler] + [f"{k}={dummy(k, v)}" for k, v in sorted(env.items())]
    if any("\t" in c or "\n" in c for c in cells):
        sys.exit(f"{logical}: tab or newline in a handler or variable")
    print("\t".join(cells))
PY
)" || die "could not read the functions from template.yaml"
[[ -n "$functions_tsv" ]] || die "template.yaml has no AWS::Serverless::Function"

# --- a clean python3.12 with only boto3, cached ------------------------------------------------
VENV=".aws-sam/check-venv"
BOTO3_SPEC="${BOTO3_SPEC:-boto3}"
if [[ ! -f "$VENV/.ready" ]] || [[ "$(cat "$VENV/.ready")" != "$BOTO3_SPEC" ]] || ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
  note "creating $VENV with $BOTO3_SPEC"
  rm -rf "$VENV"
  "$PY312" -m venv "$VENV" || die "could not create $VENV"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check "$BOTO3_SPEC" >.aws-sam/check-venv.log 2>&1; then
    tail -20 .aws-sam/check-venv.log >&2
    die "could not install $BOTO3_SPEC into $VENV (log: .aws-sam/check-venv.log)"
  fi
  echo "$BOTO3_SPEC" >"$VENV/.ready"
fi
VENV_PY="$ROOT/$VENV/bin/python"

# --- import each handler from its artifact -----------------------------------------------------
failures=0
while IFS=$'\t' read -r logical handler rest; do
  artifact="$ROOT/.aws-sam/build/$logical"
  module="${handler%.*}"
  func="${handler##*.}"
  if [[ ! -d "$artifact" ]]; then
    echo "check-build: FAIL: $logical: no artifact at .aws-sam/build/$logical" >&2
    failures=$((failures + 1)); continue
  fi
  vars=()
  if [[ -n "$rest" ]]; then IFS=$'\t' read -r -a vars <<<"$rest"; fi
  # env -i: nothing from this shell leaks in (no PYTHONPATH, no virtualenv, no credentials).
  if out="$(cd "$artifact" && env -i PATH="$(dirname "$VENV_PY"):/usr/bin:/bin" HOME="${HOME:-/tmp}" \
      LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
      "${vars[@]}" "$VENV_PY" -s -c '
import importlib, os, sys
module, func = sys.argv[1], sys.argv[2]
mod = importlib.import_module(module)
here = os.path.realpath(os.getcwd())
if not os.path.realpath(mod.__file__).startswith(here + os.sep):
    sys.exit(f"{module} was imported from {mod.__file__}, not from the artifact")
if not callable(getattr(mod, func, None)):
    sys.exit(f"{module} has no callable {func!r}")
' "$module" "$func" 2>&1)"; then
    note "ok: $logical imports $handler"
  else
    echo "check-build: FAIL: $logical: cannot import $handler from .aws-sam/build/$logical:" >&2
    echo "$out" | tail -15 | sed 's/^/    /' >&2
    failures=$((failures + 1))
  fi
done <<<"$functions_tsv"

# --- templates inside PublishFunction ----------------------------------------------------------
packed="$ROOT/.aws-sam/build/PublishFunction/newsletter/templates"
if [[ -L "$packed" || ! -d "$packed" ]]; then
  echo "check-build: FAIL: PublishFunction/newsletter/templates is missing or a symlink (it must hold real files)" >&2
  failures=$((failures + 1))
else
  missing=0
  for src in templates/*; do
    [[ -f "$src" ]] || continue
    dst="$packed/$(basename "$src")"
    if [[ -L "$dst" || ! -f "$dst" ]]; then
      echo "check-build: FAIL: $(basename "$src") is not a real file in PublishFunction/newsletter/templates" >&2
      missing=$((missing + 1))
    elif ! cmp -s "$src" "$dst"; then
      echo "check-build: FAIL: PublishFunction/newsletter/templates/$(basename "$src") differs from templates/ (stale build?)" >&2
      missing=$((missing + 1))
    fi
  done
  if (( missing )); then failures=$((failures + missing))
  else note "ok: templates/ is packed into PublishFunction/newsletter/templates (${#src_templates[@]} .j2 files)"; fi
fi

if (( failures )); then
  die "$failures problem(s) found"
fi
note "all checks passed"
