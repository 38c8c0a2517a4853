"""`rca demo --json` as a user runs it: its own Ray, database and Serve app, one JSON object out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.serve


def test_rca_demo_json_prints_one_analysis(tmp_path: Path) -> None:
    env = {**os.environ, "RCA_DATA_DIR": str(tmp_path / "data"), "RAY_ADDRESS": ""}
    rca = Path(sys.executable).with_name("rca")
    done = subprocess.run(
        [str(rca), "demo", "--scenario", "credential_stuffing", "--json"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    analysis = json.loads(done.stdout.strip().splitlines()[-1])
    assert analysis["classification"]["category"] == "security"
    assert len(analysis["hypotheses"]) >= 2 and len(analysis["remediation"]) >= 1
    assert analysis["hypotheses"][0]["service"] == "auth-service"
    assert (tmp_path / "data" / "postgres").is_dir(), "the demo stored its incident in the embedded database"
