"""The API over HTTPS from Serve's own proxy, as `rca serve` starts it, with client certificates required.

`rca serve` runs in a child process (its own Ray instance, a free port, a temp data folder) with
RCA_TLS_CERT_FILE/RCA_TLS_KEY_FILE/RCA_TLS_CLIENT_CA_FILE from a throwaway CA
(tests/support/certs.py); the clients are plain httpx with or without the right CA and client
certificate.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.support.certs import Issued, TestCA

START_TIMEOUT_SECONDS = 180  # a bound for a broken start, not a speed check


@dataclass
class HttpsApp:
    url: str
    output: list[str]
    ca: TestCA
    client: Issued


def _rca_env(tmp: Path, **tls: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RCA_DATABASE_URL")}
    env.update(RCA_DATA_DIR=str(tmp / "data"), RAY_AUTH_MODE="disabled", **tls)
    return env


def _rca(*args: str) -> list[str]:
    return [sys.executable, "-c", "from pipelines.cli import main; main()", *args]


@pytest.fixture(scope="module")
def https_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsApp]:
    tmp = tmp_path_factory.mktemp("tls-api")
    ca = TestCA(tmp / "certs")
    server, client = ca.issue("api"), ca.issue("rca-client", client=True)
    port = free_port()
    env = _rca_env(tmp, RCA_TLS_CERT_FILE=str(server.cert), RCA_TLS_KEY_FILE=str(server.key),
                   RCA_TLS_CLIENT_CA_FILE=str(ca.cert_file))
    process = subprocess.Popen(
        _rca("serve", "--port", str(port), "--no-dashboard", "--metrics-port", str(free_port())),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if "Press Ctrl-C to stop." in line:
                ready.set()
        ready.set()  # the process ended

    threading.Thread(target=read, daemon=True).start()
    ready.wait(START_TIMEOUT_SECONDS)
    try:
        if process.poll() is not None or not any("Press Ctrl-C to stop." in line for line in output):
            pytest.fail("rca serve with TLS did not start:\n" + "\n".join(output[-40:]))
        yield HttpsApp(url=f"https://127.0.0.1:{port}", output=output, ca=ca, client=client)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _context(ca_file: Path, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


def test_rca_serve_prints_https_urls(https_app: HttpsApp) -> None:
    printed = "\n".join(https_app.output)
    assert f"API:        {https_app.url}/" in printed
    assert f"Health:     {https_app.url}/health" in printed
    assert "client certificates required" in printed
    ours = [line for line in https_app.output if line.lstrip().startswith(("API", "Health", "Metrics"))]
    assert len(ours) == 4 and not any("http://" in line for line in ours)


def test_the_api_answers_over_https_with_the_right_ca_and_a_client_certificate(https_app: HttpsApp) -> None:
    with httpx.Client(verify=_context(https_app.ca.cert_file, https_app.client), timeout=30) as client:
        response = client.get(f"{https_app.url}/health")
    assert response.status_code == 200, response.text


# TLS 1.3: the server's refusal of the client arrives after the client's handshake ends, so the
# client sees the connection closed on its first read (not a handshake error of its own).
REFUSED_BY_THE_SERVER = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError)


def test_a_client_without_a_certificate_is_refused(https_app: HttpsApp) -> None:
    with httpx.Client(verify=_context(https_app.ca.cert_file), timeout=30) as client:
        with pytest.raises(REFUSED_BY_THE_SERVER):
            client.get(f"{https_app.url}/health")


def test_a_client_certificate_of_another_ca_is_refused(https_app: HttpsApp, tmp_path: Path) -> None:
    stranger = TestCA(tmp_path, name="stranger-ca").issue("stranger", client=True)
    with httpx.Client(verify=_context(https_app.ca.cert_file, stranger), timeout=30) as client:
        with pytest.raises(REFUSED_BY_THE_SERVER):
            client.get(f"{https_app.url}/health")


def test_a_client_trusting_another_ca_refuses_the_api(https_app: HttpsApp, tmp_path: Path) -> None:
    other = TestCA(tmp_path, name="another-ca")
    with httpx.Client(verify=_context(other.cert_file, https_app.client), timeout=30) as client:
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            client.get(f"{https_app.url}/health")


def test_plain_http_gets_no_answer_from_the_https_port(https_app: HttpsApp) -> None:
    with httpx.Client(timeout=30) as client:
        with pytest.raises(httpx.TransportError):
            client.get(https_app.url.replace("https://", "http://") + "/health")


@pytest.mark.parametrize("problem", ["expired", "wrong key"])
def test_rca_serve_refuses_an_unusable_api_certificate_before_starting(tmp_path: Path, problem: str) -> None:
    ca = TestCA(tmp_path / "certs")
    server = ca.issue("api", expired=problem == "expired")
    key = ca.issue("other").key if problem == "wrong key" else server.key
    env = _rca_env(tmp_path, RCA_TLS_CERT_FILE=str(server.cert), RCA_TLS_KEY_FILE=str(key))
    result = subprocess.run(_rca("serve", "--port", str(free_port()), "--no-dashboard"), cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"TLS of the API: RCA_TLS_CERT_FILE={server.cert}" in " ".join(said.split())
    if problem == "expired":
        assert "expired on" in said and "renew it" in said
    else:
        assert "KEY_VALUES_MISMATCH" in said
    assert "starting PostgreSQL" not in said
