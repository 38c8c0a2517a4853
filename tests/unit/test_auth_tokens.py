"""Authentication without a server: JWTs (HS256, RS256 via PEM and JWKS, ES256), API keys, the webhook token, roles."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pipelines.auth import (
    LOCAL_PRINCIPAL,
    AuthError,
    Authenticator,
    Forbidden,
    Role,
    StoredKey,
    TokenVerifier,
    auth_enabled,
    generate_api_key,
    issue_token,
    parse_api_key,
    webhook_token,
)
from pipelines.settings import Settings

SECRET = "s" * 48


def settings(**kw) -> Settings:
    return Settings(auth_jwt_secret=SECRET, auth_issuer="rca", auth_audience="rca-api", **kw)


def claims(**kw) -> dict:
    now = int(time.time())
    return {"sub": "alice", "role": "operator", "iss": "rca", "aud": "rca-api", "iat": now, "exp": now + 600, **kw}


def hs(payload: dict, key: str = SECRET) -> str:
    return jwt.encode(payload, key, algorithm="HS256")


def test_issued_token_verifies_with_subject_and_role() -> None:
    token = issue_token(settings(), "alice", Role.admin)
    principal = TokenVerifier(settings()).verify(token)
    assert (principal.subject, principal.role, principal.kind) == ("alice", Role.admin, "jwt")


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (hs(claims(exp=int(time.time()) - 3600)), "expired"),
        (hs(claims(aud="someone-else")), "wrong audience"),
        (hs(claims(iss="evil")), "wrong issuer"),
        (hs(claims(), key="x" * 48), "bad signature"),
        (hs(claims(nbf=int(time.time()) + 3600)), "not yet valid"),
        (hs({k: v for k, v in claims().items() if k != "exp"}), "'exp' claim"),
        ("not.a.jwt", "malformed"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "algorithm"),
    ],
)
def test_bad_tokens_say_why_without_echoing_the_token(token: str, says: str) -> None:
    with pytest.raises(AuthError) as err:
        TokenVerifier(settings()).verify(token)
    assert says in err.value.reason
    assert token not in err.value.reason


def test_alg_none_and_hs256_with_a_public_key_are_refused(tmp_path: Path) -> None:
    """Algorithm confusion: the key decides the algorithm, never the token."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(pem)
    verifier = TokenVerifier(Settings(auth_jwt_public_key_file=tmp_path / "pub.pem", auth_issuer="rca", auth_audience="rca-api"))
    forged = jwt.api_jws.PyJWS().encode(json.dumps(claims()).encode(), key=None, algorithm="none")
    with pytest.raises(AuthError, match="algorithm"):
        verifier.verify(forged)
    # HS256 signed with the public key's text as the secret: the classic confusion attack
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    import hashlib
    import hmac

    sig = base64.urlsafe_b64encode(hmac.new(pem, header + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(AuthError):
        verifier.verify((header + b"." + body + b"." + sig).decode())
    good = jwt.encode(claims(), private, algorithm="RS256")
    assert verifier.verify(good).subject == "alice"


def test_rs256_and_es256_against_a_jwks_file_by_key_id(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": []}
    for kid, key, alg in (("r1", rsa_key, "RS256"), ("e1", ec_key, "ES256")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        jwks["keys"].append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    verifier = TokenVerifier(Settings(auth_jwks_file=tmp_path / "jwks.json", auth_issuer="rca", auth_audience="rca-api"))
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "r1"})).subject == "alice"
    assert verifier.verify(jwt.encode(claims(role="viewer"), ec_key, algorithm="ES256", headers={"kid": "e1"})).role == Role.viewer
    with pytest.raises(AuthError, match="unknown key id"):
        verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "other"}))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify(jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "r1"}))


def test_unreadable_key_files_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RCA_AUTH_JWKS_FILE"):
        TokenVerifier(Settings(auth_jwks_file=tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="RCA_AUTH_JWKS_FILE"):
        TokenVerifier(Settings(auth_jwks_file=tmp_path / "bad.json"))


def test_roles_include_the_weaker_ones_and_name_what_is_needed() -> None:
    viewer = TokenVerifier(settings()).verify(hs(claims(role="viewer")))
    assert viewer.require(Role.viewer) is viewer
    with pytest.raises(Forbidden, match="needs the operator role"):
        viewer.require(Role.operator)
    admin = TokenVerifier(settings()).verify(hs(claims(roles=["viewer", "admin"], role=None)))
    assert admin.require(Role.operator).role == Role.admin
    nobody = TokenVerifier(settings()).verify(hs(claims(role="superuser")))
    with pytest.raises(Forbidden, match="has no role"):
        nobody.require(Role.viewer)


def test_api_keys_round_trip_and_malformed_ones_are_refused() -> None:
    value, key_id, secret_hash = generate_api_key()
    assert parse_api_key(value)[0] == key_id and secret_hash not in value
    for bad in ("rca_", "rca_zzzzzzzzzzzz_x", "rca_0123456789ab", "rca_0123456789abX", "other_0123456789ab_x"):
        with pytest.raises(AuthError, match="malformed API key"):
            parse_api_key(bad)


async def test_authenticator_accepts_keys_jwts_and_the_webhook_token_only_where_due() -> None:
    value, key_id, secret_hash = generate_api_key()
    keys = {key_id: StoredKey(key_id, Role.operator, secret_hash, revoked=False)}

    async def lookup(kid: str) -> StoredKey | None:
        return keys.get(kid)

    auth = Authenticator(settings(webhook_token="hook-token-123"), lookup)
    assert (await auth.authenticate(f"Bearer {value}")).key_id == key_id
    assert (await auth.authenticate(None, value)).role == Role.operator  # X-API-Key header
    assert (await auth.authenticate(f"Bearer {issue_token(settings(), 'bob', Role.viewer)}")).subject == "bob"
    hook = await auth.authenticate("Bearer hook-token-123", webhook=True)
    assert hook.kind == "webhook" and hook.role == Role.operator
    basic = base64.b64encode(b"alertmanager:hook-token-123").decode()
    assert (await auth.authenticate(f"Basic {basic}", webhook=True)).kind == "webhook"
    with pytest.raises(AuthError):  # the webhook token opens the webhook only
        await auth.authenticate("Bearer hook-token-123")
    with pytest.raises(AuthError, match="basic auth"):
        await auth.authenticate(f"Basic {basic}")
    with pytest.raises(AuthError, match="unknown API key"):
        await auth.authenticate(f"Bearer {value[:-2]}xx")
    keys[key_id] = StoredKey(key_id, Role.operator, secret_hash, revoked=True)
    with pytest.raises(AuthError, match="revoked"):
        await auth.authenticate(f"Bearer {value}")
    with pytest.raises(AuthError, match="missing credentials"):
        await auth.authenticate(None)
    for header in ("Bearer", "Digest abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        with pytest.raises(AuthError):
            await auth.authenticate(header, webhook=True)


async def test_without_auth_configured_every_caller_is_the_local_admin() -> None:
    async def lookup(kid: str) -> None:
        return None

    assert not auth_enabled(Settings())
    assert auth_enabled(Settings(auth_required=True)) and auth_enabled(settings())
    assert await Authenticator(Settings(), lookup).authenticate(None) == LOCAL_PRINCIPAL


def test_webhook_token_from_a_mounted_file(tmp_path: Path) -> None:
    (tmp_path / "webhook-token").write_text("from-file\n")
    assert webhook_token(Settings(webhook_token_file=tmp_path / "webhook-token")) == "from-file"
    assert webhook_token(Settings(webhook_token="direct", webhook_token_file=tmp_path / "x")) == "direct"
    with pytest.raises(ValueError, match="RCA_WEBHOOK_TOKEN_FILE"):
        webhook_token(Settings(webhook_token_file=tmp_path / "missing"))
