#!/usr/bin/env bash
# Evaluate a loss on tensors sent as JSON: cross entropy with label smoothing on a batch of two,
# its value and the gradient of the logits.
# Usage: examples/curl/evaluate.sh [URL]   (URL: $LOSS_SERVICE_URL, else http://127.0.0.1:8000; $LOSS_SERVICE_API_KEY, when set, is sent)
set -euo pipefail
url=${1:-${LOSS_SERVICE_URL:-http://127.0.0.1:8000}}
auth=()
if [ -n "${LOSS_SERVICE_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $LOSS_SERVICE_API_KEY"); fi

curl -sS --fail-with-body ${auth[@]+"${auth[@]}"} "$url/v1/evaluate" \
    -H 'Content-Type: application/json' \
    -d '{
  "loss": {"name": "cross_entropy", "params": {"label_smoothing": 0.1}},
  "inputs": {"input": [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "target": [0, 2]},
  "return_grad": ["input"]
}'
echo
