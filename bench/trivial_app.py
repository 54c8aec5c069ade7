"""The HTTP floor: a FastAPI app that reads the body and answers {"ok": true}.

It runs on the same uvicorn settings as ``python -m service`` (see service/__main__.py), so the
gap between it and the service is what decoding, computing and encoding cost:

    .venv/bin/python bench/trivial_app.py --port 8102
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response

from service.protocol import HTTP_PROTOCOL

app = FastAPI(title="trivial")


@app.post("/v1/evaluate")
async def evaluate(request: Request) -> Response:
    await request.body()  # receive the whole body, as the service must
    return Response(b'{"ok":true}', media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    args = parser.parse_args()
    uvicorn.run(
        app, host=args.host, port=args.port, http=HTTP_PROTOCOL, log_level="warning", access_log=False, log_config=None,
        timeout_keep_alive=5, proxy_headers=True,
    )  # fmt: skip
