"""The API over HTTPS from Serve's own proxy, as `rca serve` starts it, with client certificates required.

`rca serve` runs in a child process (its own Ray instance, a free port, a temp data folder) with
RCA_TLS_CERT_FILE/RCA_TLS_KEY_FILE/RCA_TLS_CLIENT_CA_FILE from a throwaway CA
(tests/support/certs.py); the clients are plain httpx with or without the right CA and client
certificate.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

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
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("RCA_")}
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


ALERTMANAGER = shutil.which("prometheus-alertmanager")


def _alertmanager_config(app: HttpsApp, folder: Path) -> Path:
    """Two receivers of one alert: the README's tls_config (CA and client certificate), and one without the CA."""
    webhook = {"url": f"{app.url}/webhook/alertmanager", "send_resolved": False}
    client = {"cert_file": str(app.client.cert), "key_file": str(app.client.key)}
    config = {
        "route": {
            "receiver": "verified", "group_by": ["alertname"], "group_wait": "0s", "group_interval": "1s",
            "routes": [{"receiver": "verified", "continue": True}, {"receiver": "unverified"}],
        },
        "receivers": [
            {"name": "verified", "webhook_configs": [
                {**webhook, "http_config": {"tls_config": {"ca_file": str(app.ca.cert_file), **client}}}]},
            {"name": "unverified", "webhook_configs": [{**webhook, "http_config": {"tls_config": client}}]},
        ],
    }
    path = folder / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.skipif(ALERTMANAGER is None, reason="prometheus-alertmanager is not installed (run scripts/install-prometheus)")
def test_alertmanager_with_tls_config_delivers_over_https_and_refuses_without_the_ca(
    https_app: HttpsApp, tmp_path: Path
) -> None:
    port = free_port()
    log_file = tmp_path / "alertmanager.log"
    with open(log_file, "w") as log:
        alertmanager = subprocess.Popen(
            [str(ALERTMANAGER), f"--config.file={_alertmanager_config(https_app, tmp_path)}",
             f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT,
        )
    name = f"TlsProbe{port}"
    found: list[dict] = []
    try:
        deadline = time.monotonic() + 120  # a bound for a broken delivery, not a speed check
        posted = False
        with httpx.Client(verify=_context(https_app.ca.cert_file, https_app.client), timeout=30) as api:
            while time.monotonic() < deadline and not (found and "x509" in log_file.read_text()):
                if not posted:
                    try:
                        httpx.post(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=5, json=[
                            {"labels": {"alertname": name, "service": "checkout", "severity": "critical"}}
                        ]).raise_for_status()
                        posted = True
                    except httpx.HTTPError:
                        pass  # Alertmanager still starting
                page = api.get(f"{https_app.url}/api/incidents", params={"page_size": 100}).json()
                found = [i for i in page["items"] if i["alert_name"] == name]
                time.sleep(0.5)
    finally:
        alertmanager.terminate()
        alertmanager.wait(timeout=30)
    said = log_file.read_text()
    assert found, f"the alert never reached the API over HTTPS; Alertmanager said:\n{said[-3000:]}"
    assert found[0]["service"] == "checkout"
    refused = [line for line in said.splitlines() if "unverified" in line and "x509" in line]
    assert refused, said[-3000:]
    assert "certificate signed by unknown authority" in refused[0]
