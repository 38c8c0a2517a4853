"""Secrets never leave the process: every documented kind is replaced, and nothing else is."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.reasoning.redaction import redact, redact_value

# Well-known example/test values published by the issuers, or made up for this test.
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAx4UbaDzY1b2c3d4e5f6g7h8i9j0kLmNoPqRsTuVwXyZ\n"
    "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4n5m6\n"
    "-----END RSA PRIVATE KEY-----"
)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

CASES = [
    ("aws_key", "using credentials AKIAIOSFODNN7EXAMPLE for s3", "AKIAIOSFODNN7EXAMPLE"),
    (
        "aws_secret",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY loaded",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("github_token", "clone with ghp_abcdefghijklmnopqrstuvwxyz0123456789 failed", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("github_pat", "token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv"),
    ("slack_token", "posting with xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "xoxb-123456789012-1234567890123"),
    ("slack_webhook", "webhook https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX down", "hooks.slack.com/services/T000"),
    ("bearer", "GET /api Authorization: Bearer abcdef0123456789abcdef", "abcdef0123456789abcdef"),
    ("basic_auth", "header authorization: Basic dXNlcjpzM2NyZXQ=", "dXNlcjpzM2NyZXQ="),
    ("url_password", "connecting to postgres://app:hunter2pass@db.internal:5432/orders", "hunter2pass"),
    ("password_field", "login attempt password=Sup3rS3cret! for admin", "Sup3rS3cret!"),
    ("pem", f"loaded key {PEM} from disk", "MIIEowIBAAKCAQEA"),
    ("jwt", f"token {JWT} expired", "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6"),
    ("email", "password reset mail sent to jane.doe+ops@example.co.uk", "jane.doe+ops@example.co.uk"),
    ("card_spaces", "charge failed for card 4111 1111 1111 1111 amount 10", "4111 1111 1111 1111"),
    ("card_plain", "card=5555555555554444 declined", "5555555555554444"),
    # a key name followed by a secret-shaped value without "=" or ":" (issue 16)
    ("aws_secret_spaced", "export AWS_SECRET_ACCESS_KEY q8Vn3Rb+Xk2LpQ9sT7wYz4Ab1Cd5Ef6Gh8Ij0KlMn loaded",
     "q8Vn3Rb+Xk2LpQ9sT7wYz4Ab1Cd5Ef6Gh8Ij0KlMn"),
    ("aws_secret_tab", "AWS_SECRET_ACCESS_KEY\twJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws_secret_flag", "aws s3 sync --aws-secret-access-key q8Vn3Rb/Xk2LpQ9sT7wYz4Ab1Cd5Ef6Gh8Ij0KlMn s3://b",
     "q8Vn3Rb/Xk2LpQ9sT7wYz4Ab1Cd5Ef6Gh8Ij0KlMn"),
    ("secret_near_name", "the secret key for bucket logs is q8Vn3RbXk2LpQ9sT7wYz4Ab1Cd5Ef6Gh8Ij0KlMn.",
     "q8Vn3RbXk2LpQ9sT7wYz4Ab1Cd5Ef6Gh8Ij0KlMn"),
    ("api_key_spaced", "api key 9f8e7d6c5b4a39281706f5e4d3c2b1a0 rejected", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
    ("client_secret_quoted", 'client_secret "Zx8Yw7Vu6Ts5Rq4Po3Nm"', "Zx8Yw7Vu6Ts5Rq4Po3Nm"),
]


@pytest.mark.parametrize(("kind", "line", "secret"), CASES, ids=[c[0] for c in CASES])
def test_each_secret_kind_is_redacted_and_counted(kind: str, line: str, secret: str) -> None:
    out, n = redact(line)
    assert secret not in out
    assert n >= 1
    assert "[REDACTED:" in out


def test_context_around_a_secret_is_kept() -> None:
    out, n = redact("db error: postgres://app:hunter2pass@db.internal:5432/orders refused")
    assert n == 1
    assert out.startswith("db error: postgres://app:")
    assert "@db.internal:5432/orders refused" in out


@pytest.mark.parametrize(
    "line",
    [
        "GET /api/orders/12345 200 in 35ms",
        "2024-03-01T12:00:00.123Z INFO request_id=8f14e45f-ceea-467f-a0e3-5f1b2c3d4e5f done",
        "timestamp 1709294400123 took 4111 ms",  # epoch millis start with 1: never a card number
        "Token validation failed for session",
        "order 4111111111111112 not found",  # fails the Luhn check: an id, not a card
        "java.lang.OutOfMemoryError: Java heap space at com.example.Cache.put(Cache.java:42)",
        # a key name followed by words, paths and names, not secrets
        "secret rotation failed for service checkout-service-v2",
        "access token expired for ConnectionRefusedException",
        "private key file /etc/ssl/private/server-2024.key not found",
        "Failed to pull secret for pod orders-7d9f8b6c5-x2k4q",
        "credentials loaded from /var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    ],
)
def test_ordinary_log_lines_are_left_alone(line: str) -> None:
    assert redact(line) == (line, 0)


def test_redaction_is_idempotent() -> None:
    line = f"user jane@example.com password=abc12345 auth {JWT} key AKIAIOSFODNN7EXAMPLE"
    once, n1 = redact(line)
    twice, n2 = redact(once)
    assert n1 == 4
    assert (twice, n2) == (once, 0)


def test_redact_value_walks_nested_structures_and_sums_counts() -> None:
    value = {"lines": ["mail ops@example.com", "ok"], "meta": ("AKIAIOSFODNN7EXAMPLE", 3), "n": 1}
    out, n = redact_value(value)
    assert n == 2
    assert out["lines"][1] == "ok" and out["n"] == 1 and out["meta"][1] == 3
    assert "example.com" not in str(out) and "AKIA" not in str(out)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_and_never_grows_a_secret(text: str) -> None:
    out, n = redact(text)
    assert n >= 0
    assert isinstance(out, str)
    assert redact(out)[1] == 0
