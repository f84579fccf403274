#!/usr/bin/env bash
# `sam local invoke` one function against the local stack, the way `make sam-local` does it:
#
#   scripts/sam-invoke.sh FUNCTION EVENT.json [more `sam local invoke` options]
#
# - the built template (.aws-sam/build/template.yaml: run `sam build` or `make build-check` first);
# - the env-vars file that `newsletter local start --host ADDRESS` wrote beside the stack's state
#   ($NEWSLETTER_LOCAL_DIR/sam-env.json, by default out/local/sam-env.json): each function's local
#   table names, queue URLs, bucket, topic, parameter names and AWS_ENDPOINT_URL;
# - the image: $SAM_LOCAL_IMAGE if set ("official", "local" or an image name); else the official
#   public.ecr.aws/lambda/python:3.12-x86_64 if Docker has it, else the one scripts/sam-local-image.sh
#   built; never pulled (--skip-pull-image);
# - no AWS credentials, profile or instance metadata reach sam (it would ask STS for the account,
#   slowly when offline, and hand your credentials to the function): the container gets sam's
#   placeholder keys, which the local stack accepts.
#
# sam exits 0 even when the handler raised: read the answer it prints (an "errorType" is a failure).
# Env: SAM (the sam binary; default .venv-sam/bin/sam), NEWSLETTER_LOCAL_DIR, SAM_LOCAL_IMAGE.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "sam-invoke: FAIL: $*" >&2; exit 1; }

if [[ $# -lt 2 || "$1" == -h || "$1" == --help ]]; then sed -n '2,20p' "$0"; exit 2; fi
FUNCTION="$1" EVENT="$2"
shift 2
[[ -f "$EVENT" ]] || die "no event file $EVENT"

SAM="${SAM:-}"
if [[ -z "$SAM" ]]; then
  if [[ -x "$ROOT/.venv-sam/bin/sam" ]]; then SAM="$ROOT/.venv-sam/bin/sam"
  elif command -v sam >/dev/null; then SAM="$(command -v sam)"
  else die "sam not found (make .venv-sam/.installed, or set SAM=...)"; fi
fi

STATE_DIR="${NEWSLETTER_LOCAL_DIR:-$ROOT/out/local}"
ENV_VARS="$STATE_DIR/sam-env.json"
[[ -f "$ENV_VARS" ]] || die "no $ENV_VARS: start the local stack where containers reach it (newsletter local start --host <Docker bridge gateway>)"

image=()
case "${SAM_LOCAL_IMAGE:-auto}" in
  official) ;;
  local) image=(--invoke-image "$(bash "$ROOT/scripts/sam-local-image.sh" --print-name)") ;;
  auto)
    if ! docker image inspect public.ecr.aws/lambda/python:3.12-x86_64 >/dev/null 2>&1; then
      local_image="$(bash "$ROOT/scripts/sam-local-image.sh" --print-name)"
      docker image inspect "$local_image" >/dev/null 2>&1 \
        || die "no invoke image: docker pull public.ecr.aws/lambda/python:3.12-x86_64, or build one offline (make sam-local does, or scripts/sam-local-image.sh)"
      image=(--invoke-image "$local_image")
    fi ;;
  *) image=(--invoke-image "$SAM_LOCAL_IMAGE") ;;
esac

cd "$ROOT"
exec env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
  -u AWS_DEFAULT_PROFILE -u AWS_ENDPOINT_URL \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
  AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0 \
  HTTPS_PROXY=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
  "$SAM" local invoke "$FUNCTION" \
  --template "$ROOT/.aws-sam/build/template.yaml" \
  --event "$EVENT" \
  --env-vars "$ENV_VARS" \
  --skip-pull-image \
  "${image[@]}" "$@"
