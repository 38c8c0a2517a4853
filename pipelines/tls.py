"""TLS on every hop: the API's HTTPS, Kafka's SSL/SASL_SSL, the CA that outgoing HTTPS trusts, and errors that name the hop.

One place builds each piece so every caller gets the same behaviour:

* :func:`serve_http_options` is the ``http_options`` of ``serve.start`` (host, port and, with
  ``RCA_TLS_CERT_FILE``/``RCA_TLS_KEY_FILE``, HTTPS from Serve's own proxy; with
  ``RCA_TLS_CLIENT_CA_FILE`` client certificates are required); :func:`check_api_certificate`
  refuses a certificate that is expired or does not match its key before anything starts.
* :func:`http_verify` is what outgoing HTTPS (Loki, Prometheus, the LLM, notification receivers)
  verifies servers with: ``RCA_CA_FILE``, else httpx's default bundle. There is no switch that
  turns verification off.
* :func:`describe_tls_error` turns an ``ssl`` failure buried in a client's exception chain into
  "TLS to <hop> at <where> failed: <why>", so an expired or untrusted certificate is never
  reported as a bare "connection error".

Kafka: :func:`kafka_client_options` is the security half of every aiokafka client's keyword
arguments (``SSL`` or ``SASL_SSL`` with SCRAM, from ``RCA_KAFKA_*``); aiokafka logs and swallows
the reason a bootstrap failed, so :func:`kafka_connect_problem` connects once more, alone, to say
which broker refused and why (TLS or SASL).

PostgreSQL needs nothing here: asyncpg reads ``sslmode=verify-full&sslrootcert=<CA file>`` from
``RCA_DATABASE_URL`` itself; the store only wraps its errors with :func:`describe_tls_error`.
"""

from __future__ import annotations

import ssl
from datetime import datetime, timezone
from typing import Any

import httpx
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from cryptography import x509

from pipelines.settings import Settings, secret_value

# Serve's proxy runs this (an import path in RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH) in its
# own process before it starts uvicorn; see require_client_certificates.
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "pipelines.tls:require_client_certificates"


def serve_http_options(settings: Settings) -> dict[str, Any]:
    """``http_options`` for ``serve.start``: where the API listens and, when configured, its TLS files."""
    options: dict[str, Any] = {"host": settings.host, "port": settings.port}
    if settings.tls_cert_file and settings.tls_key_file:
        options["ssl_certfile"] = str(settings.tls_cert_file)
        options["ssl_keyfile"] = str(settings.tls_key_file)
        if settings.tls_client_ca_file:
            options["ssl_ca_certs"] = str(settings.tls_client_ca_file)
    return options


def check_api_certificate(settings: Settings, now: datetime | None = None) -> None:
    """Refuse to serve HTTPS with a certificate that no client would accept, before anything starts.

    Checked: the key belongs to the certificate, the certificate is in its validity period. The
    ``ValueError`` names the hop (API), the file and why, instead of every client failing later
    with a handshake error.
    """
    if not settings.tls_cert_file or not settings.tls_key_file:
        return
    where = f"RCA_TLS_CERT_FILE={settings.tls_cert_file}"
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except ssl.SSLError as exc:
        raise ValueError(
            f"TLS of the API: {where} with RCA_TLS_KEY_FILE={settings.tls_key_file} cannot be used "
            f"({exc.reason or exc}); the key must be the certificate's, both in PEM") from exc
    certificate = x509.load_pem_x509_certificate(settings.tls_cert_file.read_bytes())
    moment = now or datetime.now(timezone.utc)
    if moment > certificate.not_valid_after_utc:
        raise ValueError(f"TLS of the API: {where} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
                         "clients would refuse it: renew it")
    if moment < certificate.not_valid_before_utc:
        raise ValueError(f"TLS of the API: {where} is not valid before "
                         f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; clients would refuse it")


def require_client_certificates() -> list[Any]:
    """Make Serve's proxy require a client certificate whenever it is given a CA for them.

    Ray Serve 2.60 hands ``ssl_ca_certs`` to uvicorn but not ``ssl_cert_reqs``, whose default
    (``CERT_NONE``) never asks the client for a certificate: the CA alone would be ignored and any
    client admitted. Serve calls this hook inside the proxy process before uvicorn builds its SSL
    context, so the wrap below turns "a client CA is set" into ``CERT_REQUIRED`` there. Returns no
    middlewares (what the hook must return).
    """
    import uvicorn.config

    original = uvicorn.config.create_ssl_context
    if getattr(original, "_rca_requires_client_certificates", False):
        return []

    def create_ssl_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        if kwargs.get("ca_certs"):
            kwargs["cert_reqs"] = ssl.CERT_REQUIRED
        return original(*args, **kwargs)

    create_ssl_context._rca_requires_client_certificates = True  # type: ignore[attr-defined]
    uvicorn.config.create_ssl_context = create_ssl_context  # type: ignore[assignment]
    return []


def http_verify(settings: Settings) -> ssl.SSLContext:
    """The SSL context outgoing HTTPS verifies servers with: ``RCA_CA_FILE``, else httpx's default CA bundle.

    Always verifying (hostname and chain): a private CA is trusted by naming its file, never by
    turning verification off. A file that is not a PEM CA bundle is a ``ValueError`` naming it.
    """
    if settings.ca_file is None:
        return httpx.create_ssl_context()
    try:
        return httpx.create_ssl_context(verify=str(settings.ca_file))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"RCA_CA_FILE={settings.ca_file}: not a readable PEM CA bundle ({exc})") from exc


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl`` error that caused ``exc`` (httpx, openai and asyncpg wrap it), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_tls_error(hop: str, where: str, exc: BaseException) -> str | None:
    """"TLS to <hop> at <where> failed: <why>" when ``exc`` comes from a TLS failure, else None.

    ``why`` is OpenSSL's verdict (``certificate has expired``, ``self-signed certificate in
    certificate chain``, ``Hostname mismatch...``) or the handshake's alert (a server that wanted
    a client certificate).
    """
    failure = tls_failure(exc)
    if failure is None:
        return None
    if isinstance(failure, ssl.SSLCertVerificationError):
        why = f"its certificate was refused: {failure.verify_message or failure.reason}"
    else:
        why = f"the handshake failed: {failure.reason or failure}"
    return f"TLS to {hop} at {where} failed: {why}"



def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """The security keyword arguments of every aiokafka client (producer, consumers, admin).

    ``PLAINTEXT`` gives ``{"security_protocol": "PLAINTEXT"}``. ``SSL`` and ``SASL_SSL`` add an
    ``ssl_context`` from aiokafka's helper, which always verifies the broker's chain and host name,
    trusting ``RCA_KAFKA_CA_FILE``, else ``RCA_CA_FILE``, else the system store, and presenting
    ``RCA_KAFKA_CERT_FILE``/``RCA_KAFKA_KEY_FILE`` when set. ``SASL_SSL`` adds the SCRAM mechanism
    and credentials (the password from ``RCA_KAFKA_SASL_PASSWORD`` or its ``_FILE``). A file that
    cannot be used is a ``ValueError`` naming its variable, never the password.
    """
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol == "PLAINTEXT":
        return options
    ca_name, ca_file = (("RCA_KAFKA_CA_FILE", settings.kafka_ca_file) if settings.kafka_ca_file
                        else ("RCA_CA_FILE", settings.ca_file))
    try:
        context = create_ssl_context(cafile=str(ca_file) if ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{ca_name}={ca_file}: not a readable PEM CA bundle for Kafka ({exc})") from exc
    if settings.kafka_cert_file and settings.kafka_key_file:
        try:
            context.load_cert_chain(settings.kafka_cert_file, settings.kafka_key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                f"RCA_KAFKA_CERT_FILE={settings.kafka_cert_file} with RCA_KAFKA_KEY_FILE={settings.kafka_key_file} "
                f"cannot be used ({exc}); the key must be the certificate's, both in PEM") from exc
    options["ssl_context"] = context
    if protocol == "SASL_SSL":
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = secret_value(
            settings.kafka_sasl_password, settings.kafka_sasl_password_file, "RCA_KAFKA_SASL_PASSWORD")
    return options


async def kafka_connect_problem(bootstrap: str, options: dict[str, Any], timeout_seconds: float = 10.0) -> str | None:
    """Why a client with ``options`` cannot connect to the brokers of ``bootstrap``, or None when one accepts it.

    aiokafka reports a failed bootstrap as "Unable to bootstrap from [...]" and only logs the
    cause. This opens one connection per bootstrap address with the same options (TLS handshake,
    then SASL) and returns the first refusal as "TLS to Kafka at host:port failed: ..." or
    "SASL authentication to Kafka at host:port as <user> (<mechanism>) failed: ...". Plain
    connection errors (nothing listening) are left to the caller's own message.
    """
    for address in bootstrap.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon:  # no port: aiokafka's default
            host, port = port, "9092"
        where = f"{host}:{port}"
        try:
            connection = await create_conn(host.strip("[]"), int(port), request_timeout_ms=int(timeout_seconds * 1000),
                                           **options)
        except (OSError, KafkaError, TimeoutError) as exc:
            described = describe_tls_error("Kafka", where, exc)
            if described and not isinstance(tls_failure(exc), ssl.SSLCertVerificationError):
                return (f"{described} (a broker that requires client certificates refuses a missing or unknown "
                        "one: RCA_KAFKA_CERT_FILE, RCA_KAFKA_KEY_FILE)")
            if described:
                return described
            if isinstance(exc, KafkaError) and options.get("sasl_mechanism"):
                return (f"SASL authentication to Kafka at {where} as {options.get('sasl_plain_username')} "
                        f"({options['sasl_mechanism']}) failed: {exc}")
            continue
        connection.close()
        return None
    return None
