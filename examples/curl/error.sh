#!/usr/bin/env bash
# What an error looks like: every one is application/problem+json (RFC 9457) with a "detail" and
# "errors" that point at the field at fault. Here the target has three class indices for a batch
# of two: a 422 that names the role, the shape expected (its letters bound) and the shape sent.
# Prints the problem, then a line with the status and the content type.
# Usage: examples/curl/error.sh [URL]   (URL: $LOSS_SERVICE_URL, else http://127.0.0.1:8000; $LOSS_SERVICE_API_KEY, when set, is sent)
set -euo pipefail
url=${1:-${LOSS_SERVICE_URL:-http://127.0.0.1:8000}}
auth=()
if [ -n "${LOSS_SERVICE_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $LOSS_SERVICE_API_KEY"); fi

curl -sS ${auth[@]+"${auth[@]}"} "$url/v1/evaluate" \
    -H 'Content-Type: application/json' \
    -d '{"loss": "cross_entropy", "inputs": {"input": [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "target": [0, 2, 1]}}' \
    -w '\nHTTP %{http_code} %{content_type}\n'
