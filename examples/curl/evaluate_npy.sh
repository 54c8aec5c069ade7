#!/usr/bin/env bash
# Evaluate a loss on .npy files, as numpy (np.save) and other languages' npy writers make them:
# multipart/form-data with the request's JSON in a part named "request" and one file part per role.
# Here: binary cross entropy of logits (data/logits.npy, float32 4x3) against multi-label targets
# (data/labels.npy), positive classes weighted per class, with the gradient of the logits.
# Usage: examples/curl/evaluate_npy.sh [URL]   (URL: $LOSS_SERVICE_URL, else http://127.0.0.1:8000; $LOSS_SERVICE_API_KEY, when set, is sent)
set -euo pipefail
url=${1:-${LOSS_SERVICE_URL:-http://127.0.0.1:8000}}
auth=()
if [ -n "${LOSS_SERVICE_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $LOSS_SERVICE_API_KEY"); fi
data=$(cd "$(dirname "$0")" && pwd)/data

curl -sS --fail-with-body ${auth[@]+"${auth[@]}"} "$url/v1/evaluate" \
    -F 'request={"loss": {"name": "bce_with_logits", "params": {"pos_weight": [1.0, 2.0, 0.5]}}, "return_grad": ["input"]}' \
    -F "input=@$data/logits.npy" \
    -F "target=@$data/labels.npy"
echo
