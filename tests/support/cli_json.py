"""Run an ``rca`` command as a user would and read the JSON object it prints last."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_cli_json(*args: str, timeout: float = 1800) -> dict[str, Any]:
    """``python -m pipelines.cli ARGS`` (which should include ``--json``): its last stdout line, parsed."""
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
