"""Fixtures of the browser tests: Debian's chromium (installed by ``scripts/install-chromium``),
driven headless by Playwright, against the session's Serve app (``tests/conftest.py``).

Playwright's own browser download is never used (no CDN is reachable here): the system chromium
is given as ``executable_path``. When chromium cannot be installed, the tests skip and say why.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stored_incident import analyze_simulated

REPO = Path(__file__).resolve().parents[2]
#: axe-core 4.14.1 from npm (MPL-2.0, see vendor/axe-LICENSE), injected into pages to check accessibility
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
#: Debian's chromium package puts the browser here; /usr/bin/chromium is a wrapper script
DEBIAN_CHROMIUM = Path("/usr/lib/chromium/chromium")


def chromium_executable() -> str:
    """The system chromium, installed first when missing; pytest.skip with the reason when it cannot be."""
    if not DEBIAN_CHROMIUM.exists() and shutil.which("chromium") is None:
        done = subprocess.run([str(REPO / "scripts" / "install-chromium")], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"chromium is not installed and scripts/install-chromium failed: {done.stderr.strip()[-300:]}")
    if DEBIAN_CHROMIUM.exists():
        return str(DEBIAN_CHROMIUM)
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("scripts/install-chromium ran but no chromium is on PATH")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is installed by the test extra")
    executable = chromium_executable()
    with playwright_api.sync_playwright() as p:
        # --no-sandbox: chromium's sandbox needs user namespaces, which containers and CI runners as root lack
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def axe_script() -> Path:
    return AXE


@pytest.fixture(scope="module")
def stored_incident(serve_app: str, auth_headers) -> dict:
    """A simulated DNS outage analysed by the app, on a service of its own: 3 hypotheses, a 10-minute window."""
    return analyze_simulated(serve_app, auth_headers, "dns_failure", "browser")
