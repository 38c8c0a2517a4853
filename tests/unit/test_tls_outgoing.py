"""Outgoing HTTPS (Loki, Prometheus, the LLM) verifies servers with RCA_CA_FILE, and a refusal names the hop.

The stand-ins answer over real TLS with certificates made at run time (tests/support/certs.py);
the clients are the production ones (httpx, openai) built from the settings.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipelines.reasoning.llm import LLMReasoner
from pipelines.schemas import Alert
from pipelines.settings import Settings
from pipelines.sources import LokiSource, PrometheusSource, build_sources, gather_context
from pipelines.tls import http_verify, serve_http_options
from tests.support.certs import TestCA
from tests.support.llm_fixtures import FakeFallback, good_answer, make_evidence
from tests.support.loki_standin import Entry, LokiStandin
from tests.support.openai_standin import OpenAIStandin, answer
from tests.support.prometheus_standin import PrometheusStandin

END = datetime(2024, 3, 1, 12, 5, tzinfo=timezone.utc)
START = END - timedelta(minutes=5)
ALERT = Alert(name="HighErrorRate", timestamp=END, labels={"service": "pay"})
QUERIES = {"cpu_usage_percent": 'sum(rate(cpu_seconds_total{{service="{service}"}}[1m])) * 100'}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("tls-outgoing"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("tls-other"), name="some-other-ca")


def trusting(ca: TestCA, **values: object) -> Settings:
    return Settings(RCA_CA_FILE=str(ca.cert_file), **values)  # type: ignore[arg-type]


def loki_with_lines() -> LokiStandin:
    at = int(START.timestamp() * 1e9) + 1_000_000_000
    return LokiStandin([Entry({"service": "pay"}, at + i, f"pay line {i}") for i in range(3)])


async def test_loki_over_https_is_read_with_the_configured_ca(ca: TestCA) -> None:
    server = ca.issue("loki")
    with loki_with_lines().use_tls(server.cert, server.key) as loki:
        assert loki.url.startswith("https://")
        sources = build_sources(trusting(ca, RCA_LOKI_URL=loki.url))  # the CA reaches the source from settings
        telemetry, reasons = await gather_context(sources, ALERT, START, END)
    assert reasons == []
    assert [e.message for e in telemetry.logs] == ["pay line 0", "pay line 1", "pay line 2"]


async def test_verification_is_on_without_a_ca_setting(ca: TestCA) -> None:
    """No RCA_CA_FILE: the default bundle does not know the test CA, so the server is refused, not trusted."""
    server = ca.issue("loki-default")
    with loki_with_lines().use_tls(server.cert, server.key) as loki:
        _, reasons = await gather_context(build_sources(Settings(RCA_LOKI_URL=loki.url)), ALERT, START, END)  # type: ignore[call-arg]
    assert len(reasons) == 1
    assert reasons[0].startswith(f"loki: TLS to Loki at {loki.url} failed: its certificate was refused: ")
    assert "unable to get local issuer certificate" in reasons[0]


async def test_an_expired_loki_certificate_is_refused_and_named(ca: TestCA) -> None:
    server = ca.issue("loki-expired", expired=True)
    with loki_with_lines().use_tls(server.cert, server.key) as loki:
        result = await LokiSource(loki.url, ["service"], verify=http_verify(trusting(ca))).fetch(ALERT, START, END)
        served = loki.requests
    assert result.status == "error"
    assert result.error == f"TLS to Loki at {loki.url} failed: its certificate was refused: certificate has expired"
    assert served == []  # nothing was sent over the refused connection


async def test_prometheus_with_a_certificate_of_another_ca_is_refused_and_named(ca: TestCA, other_ca: TestCA) -> None:
    server = other_ca.issue("prometheus")
    with PrometheusStandin().use_tls(server.cert, server.key) as prom:
        result = await PrometheusSource(prom.url, QUERIES, verify=http_verify(trusting(ca))).fetch(ALERT, START, END)
    assert result.status == "error"
    assert result.error is not None
    assert result.error.startswith(f"cpu_usage_percent: TLS to Prometheus at {prom.url} failed: its certificate was refused")
    assert "unable to get local issuer certificate" in result.error


async def test_prometheus_over_https_answers_with_the_right_ca(ca: TestCA) -> None:
    server = ca.issue("prometheus-ok")
    with PrometheusStandin().use_tls(server.cert, server.key) as prom:
        result = await PrometheusSource(prom.url, QUERIES, verify=http_verify(trusting(ca))).fetch(ALERT, START, END)
    assert result.status == "ok" and result.error is None
    assert {m.name for m in result.metrics} == {"cpu_usage_percent"}


def llm_settings(ca: TestCA, base_url: str) -> Settings:
    return trusting(
        ca, OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-test", OPENAI_MODEL="standin",
        RCA_LLM_MAX_ATTEMPTS=3, RCA_LLM_BACKOFF_SECONDS=0.01, RCA_LLM_TIMEOUT_SECONDS=5,
    )


async def test_the_llm_over_https_answers_with_the_configured_ca(ca: TestCA) -> None:
    server = ca.issue("llm")
    with OpenAIStandin([answer(good_answer())]).use_tls(server.cert, server.key) as llm:
        verdict = await LLMReasoner(llm_settings(ca, llm.url + "/v1"), FakeFallback()).reason(make_evidence())
    assert verdict.degraded_reasons == []
    assert verdict.reasoner == "llm:standin"


async def test_an_expired_llm_certificate_is_refused_once_and_named(ca: TestCA) -> None:
    server = ca.issue("llm-expired", expired=True)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    with OpenAIStandin([answer(good_answer())]).use_tls(server.cert, server.key) as llm:
        reasoner = LLMReasoner(llm_settings(ca, llm.url + "/v1"), FakeFallback())
        reasoner._sleep = record  # a retry would wait here first
        verdict = await reasoner.reason(make_evidence())
    assert verdict.degraded_reasons == [
        f"llm: TLS to LLM at {llm.url}/v1/ failed: its certificate was refused: certificate has expired"
    ]
    assert waits == []  # not retried: a certificate does not fix itself between attempts
    assert verdict.reasoner == "evidence"  # the analysis goes on with the evidence reasoner's verdict


def test_a_ca_file_that_is_not_pem_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=f"RCA_CA_FILE={bogus}: not a readable PEM CA bundle"):
        http_verify(Settings(RCA_CA_FILE=str(bogus)))  # type: ignore[call-arg]


def test_tls_settings_go_in_pairs_and_name_what_is_missing(ca: TestCA) -> None:
    server = ca.issue("api-pairs")
    with pytest.raises(ValueError, match="RCA_TLS_CERT_FILE is set but RCA_TLS_KEY_FILE is not"):
        Settings(RCA_TLS_CERT_FILE=str(server.cert))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="RCA_TLS_CLIENT_CA_FILE is set without RCA_TLS_CERT_FILE"):
        Settings(RCA_TLS_CLIENT_CA_FILE=str(ca.cert_file))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="RCA_TLS_KEY_FILE"):
        Settings(RCA_TLS_CERT_FILE=str(server.cert), RCA_TLS_KEY_FILE="/no/such/key.pem")  # type: ignore[call-arg]


def test_serve_http_options_carry_the_tls_files(ca: TestCA) -> None:
    server = ca.issue("api-options")
    plain = Settings(RCA_PORT=8123)  # type: ignore[call-arg]
    assert serve_http_options(plain) == {"host": "127.0.0.1", "port": 8123}
    assert plain.api_scheme == "http"
    mutual = Settings(  # type: ignore[call-arg]
        RCA_PORT=8123, RCA_TLS_CERT_FILE=str(server.cert), RCA_TLS_KEY_FILE=str(server.key),
        RCA_TLS_CLIENT_CA_FILE=str(ca.cert_file),
    )
    assert serve_http_options(mutual) == {
        "host": "127.0.0.1", "port": 8123, "ssl_certfile": str(server.cert), "ssl_keyfile": str(server.key),
        "ssl_ca_certs": str(ca.cert_file),
    }
    assert mutual.api_scheme == "https"
