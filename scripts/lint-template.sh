#!/usr/bin/env bash
# Lint template.yaml with cfn-lint and with `sam validate --lint`; any error or warning fails.
# Env: CFN_LINT (cfn-lint binary), SAM (sam binary).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

pick() {  # first executable of: $1 (override), $2 (repo venv), $3 (on PATH)
  if [[ -n "$1" ]]; then echo "$1"
  elif [[ -x "$2" ]]; then echo "$2"
  else command -v "$3" || true; fi
}
CFN_LINT="$(pick "${CFN_LINT:-}" "$ROOT/.venv/bin/cfn-lint" cfn-lint)"
SAM="$(pick "${SAM:-}" "$ROOT/.venv-sam/bin/sam" sam)"
[[ -n "$CFN_LINT" ]] || { echo "lint-template: FAIL: cfn-lint not found (.venv/bin/cfn-lint, or set CFN_LINT=...)" >&2; exit 1; }
[[ -n "$SAM" ]] || { echo "lint-template: FAIL: sam not found (.venv-sam/bin/sam, or set SAM=...)" >&2; exit 1; }

status=0

echo "lint-template: $("$CFN_LINT" --version) template.yaml"
# cfn-lint exits non-zero on errors (2) and warnings (4); informational findings are not shown.
if ! "$CFN_LINT" template.yaml; then
  echo "lint-template: FAIL: cfn-lint reported problems" >&2
  status=1
fi

echo "lint-template: sam validate --lint"
# No AWS account is needed. The proxy only keeps sam's PyPI version check from stalling
# offline; validate fetches nothing else.
if ! SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
    HTTPS_PROXY=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
    "$SAM" validate --lint --template-file template.yaml; then
  echo "lint-template: FAIL: sam validate --lint reported problems" >&2
  status=1
fi

echo "lint-template: SQS queues give their consumers 6x the function timeout"
# STYLE.md's rule, which neither linter checks: VisibilityTimeout >= 6 x the consuming function's
# Timeout, and no function-level DeadLetterQueue on an SQS-triggered function.
SAM_PY="$(dirname "$SAM")/python"
[[ -x "$SAM_PY" ]] || SAM_PY="$(head -1 "$SAM" | sed 's/^#!//')"
if ! "$SAM_PY" - template.yaml <<'PY'
import sys
from samcli.yamlhelper import yaml_parse

t = yaml_parse(open(sys.argv[1]).read())
res = t["Resources"]
glob = t.get("Globals", {}).get("Function", {})
bad = []
for name, r in res.items():
    if r.get("Type") != "AWS::Serverless::Function":
        continue
    props = r.get("Properties", {})
    timeout = props.get("Timeout", glob.get("Timeout", 3))
    for ev_name, ev in props.get("Events", {}).items():
        if ev.get("Type") != "SQS":
            continue
        if "DeadLetterQueue" in props:
            bad.append(f"{name}: DeadLetterQueue applies to async invokes only; give the queue a RedrivePolicy")
        queue = ev["Properties"]["Queue"]
        ref = queue.get("Fn::GetAtt") if isinstance(queue, dict) else None
        logical = (ref.split(".")[0] if isinstance(ref, str) else ref[0]) if ref else None
        if logical not in res:
            bad.append(f"{name}.{ev_name}: queue is not a resource of this template; not checked")
            continue
        qprops = res[logical].get("Properties", {})
        vt = qprops.get("VisibilityTimeout", 30)
        if not isinstance(vt, int) or not isinstance(timeout, int) or vt < 6 * timeout:
            bad.append(f"{logical}: VisibilityTimeout {vt} < 6 x {name} Timeout {timeout}")
        if "RedrivePolicy" not in qprops:
            bad.append(f"{logical}: no RedrivePolicy to a dead-letter queue")
for b in bad:
    print(f"  {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
then
  echo "lint-template: FAIL: queue settings do not match their consumers" >&2
  status=1
fi

if (( status == 0 )); then echo "lint-template: ok"; fi
exit "$status"
