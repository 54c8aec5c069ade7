#!/usr/bin/env bash
# The catalog: every loss with its roles, shapes, params and reductions; or one loss, by its name
# or any alias (CrossEntropyLoss, cross_entropy, crossentropyloss are one loss).
# Usage: examples/curl/losses.sh [URL] [NAME]   (URL: $LOSS_SERVICE_URL, else http://127.0.0.1:8000; $LOSS_SERVICE_API_KEY, when set, is sent)
set -euo pipefail
url=${1:-${LOSS_SERVICE_URL:-http://127.0.0.1:8000}}
auth=()
if [ -n "${LOSS_SERVICE_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $LOSS_SERVICE_API_KEY"); fi

curl -sS --fail-with-body ${auth[@]+"${auth[@]}"} "$url/v1/losses${2:+/$2}"
echo
