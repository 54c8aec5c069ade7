"""scripts/fuzz with a small count: schemathesis over the served OpenAPI document of a real server
(started with scripts/serve), every operation, every phase; no server error, every status, content
type and body as documented. The long run is ``scripts/fuzz`` (700 examples per operation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_schemathesis_small_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSS_SERVICE_")}
    env["LOSS_SERVICE_VENV"] = str(Path(sys.executable).parent.parent)  # the suite's own environment
    env["FUZZ_OUT"] = str(tmp_path)
    done = subprocess.run(
        [str(ROOT / "scripts" / "fuzz"), "10", "--seed", "1"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    report = tmp_path / "report.json"
    assert report.exists(), f"no report ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    cases = json.loads(report.read_text())["test_cases"]
    assert cases["generated"] >= 100, cases
    assert done.returncode == 0, f"schemathesis found failures:\n{done.stdout[-6000:]}"
