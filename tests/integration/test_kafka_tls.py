"""Kafka over TLS: the alert path over a broker's SSL and SASL_SSL (SCRAM-SHA-512) listeners.

One broker for the module (scripts/kafka with RCA_KAFKA_TLS_PORT and RCA_KAFKA_SASL_SSL_PORT, a
certificate from a throwaway CA made at run time). Over each protocol our publishers write a log
line and an alert, and our reader (its digesters and its alert consumer, the code the app runs)
turns the alert into an incident whose context holds the line. A client that trusts another CA
and a client with a wrong SCRAM password are refused with an error that names the hop and why.
The settings that choose all this are checked here too: a bad combination is refused by name.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipelines.schemas import Alert, IncidentContext
from pipelines.settings import Settings
from pipelines.streaming.producer import AlertPublisher, KafkaUnavailable, LogPublisher
from pipelines.streaming.reader import KafkaReader
from pipelines.tls import kafka_client_options
from tests.integration.kafka_support import Broker, eventually, free_port_pair, isolated_settings, started_broker
from tests.support.certs import Issued, TestCA

pytestmark = pytest.mark.kafka

SCRAM_USER = "rca-reader"
SCRAM_PASSWORD = "scram-test-password-7f3a"


@dataclass(frozen=True)
class TlsBroker:
    """Where the module's broker listens with TLS, and the CA its certificate is signed by."""

    ssl_bootstrap: str
    sasl_bootstrap: str
    ca_file: Path
    other_ca_file: Path
    client: Issued

    def settings(self, protocol: str, **overrides: Any) -> Settings:
        """Settings of one test (own topics and group) for ``protocol``, trusting the broker's CA;
        over SSL with a client certificate, over SASL_SSL with the SCRAM login."""
        values: dict[str, Any] = {"kafka_security_protocol": protocol, "kafka_ca_file": self.ca_file}
        if protocol == "SSL":
            values.update(kafka_cert_file=self.client.cert, kafka_key_file=self.client.key)
            return isolated_settings(self.ssl_bootstrap, **{**values, **overrides})
        values.update(kafka_sasl_username=SCRAM_USER, kafka_sasl_password=SCRAM_PASSWORD)
        return isolated_settings(self.sasl_bootstrap, **{**values, **overrides})


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    folder = tmp_path_factory.mktemp("kafka-tls")
    ca = TestCA(folder / "ca")
    other = TestCA(folder / "other-ca", name="another-ca")
    issued = ca.issue("kafka-broker")
    ssl_port = free_port_pair()  # SSL (mutual: client certificates of our CA) on ssl_port, SASL_SSL on ssl_port + 1
    with started_broker(
        RCA_KAFKA_TLS_PORT=str(ssl_port), RCA_KAFKA_SASL_SSL_PORT=str(ssl_port + 1),
        RCA_KAFKA_TLS_CERT_FILE=str(issued.cert), RCA_KAFKA_TLS_KEY_FILE=str(issued.key),
        RCA_KAFKA_TLS_CLIENT_CA_FILE=str(ca.cert_file),
        RCA_KAFKA_SASL_USERNAME=SCRAM_USER, RCA_KAFKA_SASL_PASSWORD=SCRAM_PASSWORD,
    ):
        yield TlsBroker(f"127.0.0.1:{ssl_port}", f"127.0.0.1:{ssl_port + 1}", ca.cert_file, other.cert_file,
                        ca.issue("rca-client", client=True))


class Incidents:
    """Stands in for the app's ``process_alert``: keeps each alert with the log lines of its window."""

    def __init__(self) -> None:
        self.received: dict[str, list[str]] = {}

    async def process(self, alert: dict[str, Any], context: IncidentContext, delivery: str) -> dict[str, Any]:
        digest = context.window_digest
        lines = sorted(sample for template in digest.templates.values() for sample in template.samples) if digest else []
        self.received[alert["fingerprint"]] = lines
        return {"incident_id": f"inc-{alert['fingerprint']}", "created": True, "analyzed": True, "status": "open"}


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
async def test_an_alert_and_its_logs_travel_over_tls_from_our_publishers_to_our_reader(
    tls_broker: TlsBroker, protocol: str
) -> None:
    settings = tls_broker.settings(protocol, context_window_seconds=60, context_wait_seconds=1.0)
    incidents = Incidents()
    reader = KafkaReader(settings, process=incidents.process)
    logs, alerts = LogPublisher.from_settings(settings), AlertPublisher.from_settings(settings)
    await reader.start()
    try:
        fired = datetime.now(timezone.utc)
        await logs.publish([{"message": f"TLS pool exhausted over {protocol}", "service": "db", "level": "ERROR",
                             "timestamp": (fired - timedelta(seconds=5)).isoformat()}])
        await alerts.publish([Alert(name="HighErrorRate", severity="critical", timestamp=fired,
                                    labels={"service": "db", "alertname": "HighErrorRate"},
                                    fingerprint=f"tls-{protocol}")])
        await eventually(lambda: f"tls-{protocol}" in incidents.received, f"the alert read over {protocol}")
        assert incidents.received == {f"tls-{protocol}": [f"TLS pool exhausted over {protocol}"]}
    finally:
        await reader.stop()
        await logs.stop()
        await alerts.stop()


async def test_a_client_trusting_another_ca_is_refused_naming_the_hop(tls_broker: TlsBroker) -> None:
    settings = tls_broker.settings("SSL", kafka_ca_file=tls_broker.other_ca_file)
    publisher = AlertPublisher.from_settings(settings, timeout_seconds=10.0)
    with pytest.raises(KafkaUnavailable) as refused:
        await publisher.start()
    await publisher.stop()
    assert f"TLS to Kafka at {tls_broker.ssl_bootstrap} failed: its certificate was refused" in str(refused.value)


async def test_a_client_without_a_certificate_is_refused_by_the_mutual_tls_listener(tls_broker: TlsBroker) -> None:
    settings = tls_broker.settings("SSL", kafka_cert_file=None, kafka_key_file=None)
    publisher = AlertPublisher.from_settings(settings, timeout_seconds=10.0)
    with pytest.raises(KafkaUnavailable) as refused:
        await publisher.start()
    await publisher.stop()
    assert f"TLS to Kafka at {tls_broker.ssl_bootstrap} failed: the handshake failed" in str(refused.value)
    assert "RCA_KAFKA_CERT_FILE" in str(refused.value)


async def test_a_wrong_scram_password_is_refused_with_a_clear_error(tls_broker: TlsBroker) -> None:
    settings = tls_broker.settings("SASL_SSL", kafka_sasl_password="not-the-password")
    publisher = AlertPublisher.from_settings(settings, timeout_seconds=10.0)
    with pytest.raises(KafkaUnavailable) as refused:
        await publisher.start()
    await publisher.stop()
    message = str(refused.value)
    assert (f"SASL authentication to Kafka at {tls_broker.sasl_bootstrap} as {SCRAM_USER} (SCRAM-SHA-512) failed"
            in message)
    assert "invalid credentials" in message
    assert "not-the-password" not in message


def test_the_broker_script_names_what_a_tls_listener_lacks(tls_broker: TlsBroker, tmp_path: Path) -> None:
    """(The module's broker is asked for only so that the jars are known to be cached.)"""
    broker = Broker(port=free_port_pair(), state=tmp_path, env={"RCA_KAFKA_SASL_SSL_PORT": "1"})
    with pytest.raises(RuntimeError, match="need RCA_KAFKA_TLS_CERT_FILE and RCA_KAFKA_TLS_KEY_FILE"):
        broker.start()
    issued = TestCA(tmp_path / "ca").issue("kafka-broker")
    broker.env.update(RCA_KAFKA_TLS_CERT_FILE=str(issued.cert), RCA_KAFKA_TLS_KEY_FILE=str(issued.key))
    with pytest.raises(RuntimeError, match="RCA_KAFKA_SASL_SSL_PORT needs RCA_KAFKA_SASL_USERNAME"):
        broker.start()


# --- the settings that choose the protocol (no broker needed)


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert kafka_client_options(Settings()) == {"security_protocol": "PLAINTEXT"}


def test_ssl_options_always_verify_the_broker_and_present_a_client_certificate(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    client = ca.issue("rca-client", client=True)
    options = kafka_client_options(Settings(kafka_security_protocol="ssl", kafka_ca_file=ca.cert_file,
                                            kafka_cert_file=client.cert, kafka_key_file=client.key))
    assert options["security_protocol"] == "SSL"
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "rca-test-ca"),),)]
    assert "sasl_mechanism" not in options


def test_kafka_trusts_rca_ca_file_when_it_has_no_ca_of_its_own(tmp_path: Path) -> None:
    ca = TestCA(tmp_path, name="shared-ca")
    context = kafka_client_options(Settings(kafka_security_protocol="SSL", ca_file=ca.cert_file))["ssl_context"]
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "shared-ca"),),)]


def test_sasl_ssl_reads_the_password_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("from-a-file\n")
    options = kafka_client_options(Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="rca",
                                            kafka_sasl_password_file=secret, kafka_sasl_mechanism="scram-sha-256"))
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-256", "rca", "from-a-file")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "SASL_PLAINTEXT sends the SASL credentials and every record in clear"),
        ({"kafka_security_protocol": "TLS"}, "RCA_KAFKA_SECURITY_PROTOCOL='TLS': expected one of PLAINTEXT, SSL, SASL_SSL"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_password": "pw"}, "SASL_SSL needs RCA_KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "rca"},
         "needs RCA_KAFKA_SASL_PASSWORD or RCA_KAFKA_SASL_PASSWORD_FILE"),
        ({"kafka_security_protocol": "SSL", "kafka_sasl_username": "rca", "kafka_sasl_password": "pw"},
         "SASL credentials are used with SASL_SSL only"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "rca", "kafka_sasl_password": "pw",
          "kafka_sasl_mechanism": "PLAIN"}, "RCA_KAFKA_SASL_MECHANISM='PLAIN': expected one of SCRAM-SHA-256"),
    ],
)
def test_bad_kafka_security_settings_are_refused_by_name(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**values)
    assert named in str(refused.value)
    assert "'pw'" not in str(refused.value)  # the input, secrets with it, is never echoed


def test_a_ca_or_certificate_with_plaintext_is_refused(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    with pytest.raises(ValidationError, match="RCA_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: set it to SSL or SASL_SSL"):
        Settings(kafka_ca_file=ca.cert_file)
    client = ca.issue("rca-client", client=True)
    with pytest.raises(ValidationError, match="RCA_KAFKA_CERT_FILE is set but RCA_KAFKA_KEY_FILE is not"):
        Settings(kafka_security_protocol="SSL", kafka_cert_file=client.cert)


def test_a_file_that_is_not_a_ca_bundle_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-ca.pem"
    bogus.write_text("hello\n")
    with pytest.raises(ValueError, match=f"RCA_KAFKA_CA_FILE={bogus}: not a readable PEM CA bundle for Kafka"):
        kafka_client_options(Settings(kafka_security_protocol="SSL", kafka_ca_file=bogus))
