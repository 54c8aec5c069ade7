"""``python -m service`` with a plugin it cannot serve: one line on stderr naming the plugin and the
reason, exit status 3 (uvicorn's for a start-up failure), no traceback, nothing served."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..e2e.servers import ROOT, free_port

pytestmark = pytest.mark.e2e
S = "tests.plugins.sample_plugins:"


def run_service(**settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSS_SERVICE_")}
    env.update({f"LOSS_SERVICE_{k.upper()}": v for k, v in settings.items()}, LOSS_SERVICE_PORT=str(free_port()))
    return subprocess.run(
        [sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("plugins", "line"),
    [
        ("nosuch.module:Loss", "plugin 'nosuch.module:Loss': cannot import 'nosuch.module': ModuleNotFoundError: "
                               "No module named 'nosuch'"),
        (f"examples.plugins.template:MyLoss,{S}NoDefault",
         f"plugin '{S}NoDefault': __init__ parameter 'alpha' has no default; every hyper-parameter needs one"),
        (f"{S}MSELoss", f"plugin '{S}MSELoss': name 'mse_loss' is already in use by the built-in loss 'mse'"),
    ],
)  # fmt: skip
def test_a_plugin_that_cannot_be_served_stops_the_start_up(plugins, line):
    done = run_service(plugins=plugins)
    assert (done.returncode, done.stderr, done.stdout) == (3, f"loss-service: {line}\n", "")


def test_each_worker_process_refuses_it_and_the_supervisor_exits_with_its_status():
    done = run_service(plugins=f"{S}StarArgs", workers="2")
    line = f"loss-service: plugin '{S}StarArgs': __init__ takes *args; every parameter must be named"
    assert done.returncode == 3
    assert line in done.stderr.splitlines()
    assert "Traceback" not in done.stderr
