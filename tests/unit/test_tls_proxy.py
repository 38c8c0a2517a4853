"""The hook that makes Serve's proxy require client certificates when it is given a CA for them.

Ray Serve 2.60 passes ``ssl_ca_certs`` to uvicorn without ``ssl_cert_reqs``; uvicorn's default
then never asks for a client certificate. This checks both facts on the installed uvicorn, so an
upgrade that changes either shows here (tests/integration/test_tls_api.py checks it end to end).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import uvicorn.config

from pipelines.tls import require_client_certificates
from tests.support.certs import TestCA


@pytest.fixture()
def restored_uvicorn() -> Iterator[None]:
    original = uvicorn.config.create_ssl_context
    yield
    uvicorn.config.create_ssl_context = original


def _loaded(ca: TestCA, *, client_ca: bool) -> ssl.SSLContext:
    server = ca.issue("proxy")
    config = uvicorn.Config(lambda: None, ssl_certfile=str(server.cert), ssl_keyfile=str(server.key),
                            ssl_ca_certs=str(ca.cert_file) if client_ca else None)
    config.load()
    assert config.ssl is not None
    return config.ssl


def test_uvicorn_alone_ignores_the_client_ca(tmp_path, restored_uvicorn) -> None:
    assert _loaded(TestCA(tmp_path), client_ca=True).verify_mode == ssl.CERT_NONE


def test_the_hook_requires_client_certificates_only_with_a_client_ca(tmp_path, restored_uvicorn) -> None:
    assert require_client_certificates() == []
    assert require_client_certificates() == []  # idempotent: a second proxy start wraps nothing twice
    ca = TestCA(tmp_path)
    assert _loaded(ca, client_ca=True).verify_mode == ssl.CERT_REQUIRED
    assert _loaded(ca, client_ca=False).verify_mode == ssl.CERT_NONE
