"""The load-test scripts run end to end (briefly), so they keep working between benchmark runs.

These check that each script starts its systems, drives them and prints its
table with no socket errors; the performance bars themselves are judged by
full runs (see docs/performance.md), not here.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from support import ROOT


@pytest.mark.parametrize("script", ["accesslog.py", "throttle.py", "proxy.py", "cache.py", "metrics.py", "core.py", "functions.py", "mapping.py", "domains.py", "upstreams.py"])
def test_load_test_script_runs(script):
    result = subprocess.run(
        [sys.executable, str(ROOT / "loadtests" / script), "--seconds", "1", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: a bar not met in so short a run
    lines = result.stdout.splitlines()
    assert any(line.startswith("system") for line in lines), result.stdout
    assert any(line.startswith("gwd") for line in lines), result.stdout
    assert any(line.startswith(("PASS", "FAIL")) for line in lines), result.stdout
    # Every script reports its error count (socket errors and non-2xx answers): none.
    assert re.search(r"\b0 (socket )?errors", result.stdout), result.stdout
