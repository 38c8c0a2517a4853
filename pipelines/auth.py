"""Who is calling, and what they may do: JWTs, API keys, the webhook token, roles.

Pure code (no FastAPI, no database): the ingress's dependencies (``deployments/auth.py``)
and the CLI (``rca keys``, ``rca token``) call it; the store keeps API keys.

- JWTs are verified with PyJWT: HS256 with a shared secret, or RS256/ES256 against a public
  key (PEM) or a JWKS file; issuer, audience, expiry and subject are required. Only the
  algorithms of the configured key are accepted, so a token cannot choose its own.
- API keys look like ``rca_<key id>_<secret>``; only a SHA-256 of the secret is stored. The
  secret is 256 random bits, so a fast hash is enough (nothing to brute-force).
- The Alertmanager webhook may also present a shared token, as ``Authorization: Bearer``
  (``http_config.authorization``) or as the password of basic auth (``http_config.basic_auth``).

Errors say why (expired, wrong audience, bad signature, revoked key) and never echo the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import jwt
from pydantic import BaseModel, Field

from pipelines.settings import Settings

API_KEY_PREFIX = "rca_"
KEY_ID_HEX = 12
LEEWAY_SECONDS = 30
MAX_TOKEN_CHARS = 8192
DEFAULT_TOKEN_TTL_SECONDS = 3600
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]


class Role(str, Enum):
    """Roles in increasing power: each includes the ones before it."""

    viewer = "viewer"
    operator = "operator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: "Role") -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.viewer: 1, Role.operator: 2, Role.admin: 3}


class AuthError(Exception):
    """The credential is missing or not valid (401); ``reason`` is safe to show to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Forbidden(Exception):
    """Authenticated, but the role is not enough (403)."""

    def __init__(self, principal: "Principal", needed: Role) -> None:
        has = f"has {principal.role.value}" if principal.role else "has no role"
        super().__init__(f"this needs the {needed.value} role; {principal.subject} {has}")
        self.needed = needed


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: ``kind`` is jwt, api_key, webhook or local (auth off)."""

    subject: str
    role: Role | None
    kind: str
    key_id: str | None = None

    def require(self, needed: Role) -> "Principal":
        if self.role is None or not self.role.allows(needed):
            raise Forbidden(self, needed)
        return self


LOCAL_PRINCIPAL = Principal(subject="local", role=Role.admin, kind="local")


class ApiKey(BaseModel):
    """An API key as listed (never with its secret or hash)."""

    key_id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None


class ApiKeyCreate(BaseModel):
    """Body of ``POST /api/keys``."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 ._:@/-]+$")
    role: Role = Role.viewer


class NewApiKey(ApiKey):
    """A key just created: the only time its full value is shown."""

    api_key: str = Field(description="rca_<key id>_<secret>; store it now, it cannot be shown again")


@dataclass(frozen=True)
class StoredKey:
    """What the store knows of a key, for verification."""

    key_id: str
    role: Role
    secret_hash: str
    revoked: bool


# ---------------------------------------------------------------- configuration


def auth_enabled(settings: Settings) -> bool:
    """Auth is on when asked for, or as soon as a JWT key of any kind is configured."""
    if settings.auth_required is not None:
        return settings.auth_required
    return bool(settings.auth_jwt_secret or settings.auth_jwt_public_key_file or settings.auth_jwks_file)


def webhook_token(settings: Settings) -> str | None:
    """The Alertmanager webhook's shared token: RCA_WEBHOOK_TOKEN, or the file RCA_WEBHOOK_TOKEN_FILE names."""
    if settings.webhook_token:
        return settings.webhook_token
    if settings.webhook_token_file:
        try:
            token = Path(settings.webhook_token_file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"RCA_WEBHOOK_TOKEN_FILE {settings.webhook_token_file}: {exc.strerror}") from exc
        return token or None
    return None


# ---------------------------------------------------------------- API keys


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_api_key() -> tuple[str, str, str]:
    """A new key: (full key to hand out, key id, hash of its secret to store)."""
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    secret = secrets.token_urlsafe(32)
    return f"{API_KEY_PREFIX}{key_id}_{secret}", key_id, hash_secret(secret)


def parse_api_key(value: str) -> tuple[str, str]:
    """(key id, secret) of ``rca_<key id>_<secret>``; AuthError if it is not that shape."""
    if not value.startswith(API_KEY_PREFIX):
        raise AuthError("malformed API key")
    rest = value[len(API_KEY_PREFIX):]
    key_id, sep, secret = rest[:KEY_ID_HEX], rest[KEY_ID_HEX:KEY_ID_HEX + 1], rest[KEY_ID_HEX + 1:]
    if sep != "_" or not secret or any(c not in "0123456789abcdef" for c in key_id) or len(key_id) != KEY_ID_HEX:
        raise AuthError("malformed API key")
    return key_id, secret


def is_api_key(value: str) -> bool:
    return value.startswith(API_KEY_PREFIX)


# ---------------------------------------------------------------- JWTs


class TokenVerifier:
    """Verifies bearer JWTs with the configured key; built once per process."""

    def __init__(self, settings: Settings) -> None:
        self._issuer = settings.auth_issuer
        self._audience = settings.auth_audience
        self._secret = settings.auth_jwt_secret
        self._public_key: str | None = None
        self._jwks: jwt.PyJWKSet | None = None
        if settings.auth_jwt_public_key_file:
            self._public_key = _read(settings.auth_jwt_public_key_file, "RCA_AUTH_JWT_PUBLIC_KEY_FILE")
        if settings.auth_jwks_file:
            text = _read(settings.auth_jwks_file, "RCA_AUTH_JWKS_FILE")
            try:
                self._jwks = jwt.PyJWKSet.from_json(text)
            except (jwt.PyJWKError, ValueError, json.JSONDecodeError) as exc:
                raise ValueError(f"RCA_AUTH_JWKS_FILE {settings.auth_jwks_file}: not a usable JWKS ({exc})") from exc

    @property
    def configured(self) -> bool:
        return bool(self._secret or self._public_key or self._jwks)

    def verify(self, token: str) -> Principal:
        if not self.configured:
            raise AuthError("bearer tokens are not accepted here (no JWT key configured); use an API key")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("malformed token (too long)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        key, algorithms = self._key_for(header)
        if alg not in algorithms:
            raise AuthError(f"signing algorithm not accepted (expected {', '.join(algorithms)})")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError(f"wrong audience (expected {self._audience})") from None
        except jwt.InvalidIssuerError:
            raise AuthError(f"wrong issuer (expected {self._issuer})") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:  # DecodeError, InvalidAlgorithmError, bad key, ...
            raise AuthError(f"invalid token ({type(exc).__name__})") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("token lacks a subject")
        return Principal(subject=subject[:200], role=_role_of(claims), kind="jwt")

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        alg = header.get("alg")
        if self._jwks is not None and alg in ASYMMETRIC_ALGORITHMS:
            kid = header.get("kid")
            for jwk in self._jwks.keys:
                if kid is None or jwk.key_id == kid:
                    return jwk.key, [jwk.algorithm_name] if jwk.algorithm_name else ASYMMETRIC_ALGORITHMS
            raise AuthError("unknown key id (kid)")
        if self._public_key is not None and alg in ASYMMETRIC_ALGORITHMS:
            return self._public_key, ASYMMETRIC_ALGORITHMS
        if self._secret:
            return self._secret, ["HS256"]
        return self._public_key or "", ASYMMETRIC_ALGORITHMS


def _read(path: Path, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"{what} {path}: {exc.strerror}") from exc


def _role_of(claims: dict[str, Any]) -> Role | None:
    """The strongest known role in ``role`` (a string) or ``roles`` (a list); none is a 403 later, not a 401."""
    values = claims.get("roles") if isinstance(claims.get("roles"), list) else [claims.get("role")]
    known = [Role(v) for v in values if isinstance(v, str) and v in Role.__members__]
    return max(known, key=lambda r: r.rank) if known else None


def issue_token(settings: Settings, subject: str, role: Role, ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS) -> str:
    """An HS256 token for local development and tests (``rca token``)."""
    if not settings.auth_jwt_secret:
        raise ValueError("RCA_AUTH_JWT_SECRET is not set: tokens can only be issued with a shared secret")
    now = int(time.time())
    claims = {"sub": subject, "role": role.value, "iss": settings.auth_issuer, "aud": settings.auth_audience,
              "iat": now, "nbf": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, settings.auth_jwt_secret, algorithm="HS256")


# ---------------------------------------------------------------- the whole check

KeyLookup = Callable[[str], Awaitable[StoredKey | None]]


class Authenticator:
    """From request headers to a :class:`Principal`, or :class:`AuthError`."""

    def __init__(self, settings: Settings, lookup_key: KeyLookup) -> None:
        self.enabled = auth_enabled(settings)
        self._verifier = TokenVerifier(settings)
        self._lookup_key = lookup_key
        self._webhook_token = webhook_token(settings)

    async def authenticate(
        self, authorization: str | None, api_key_header: str | None = None, *, webhook: bool = False
    ) -> Principal:
        if not self.enabled:
            return LOCAL_PRINCIPAL
        scheme, credential = _split(authorization)
        if api_key_header:
            return await self._api_key(api_key_header.strip())
        if scheme is None:
            raise AuthError("missing credentials: send 'Authorization: Bearer <token or API key>'")
        if scheme == "basic":
            password = _basic_password(credential)
            if webhook and self._webhook_matches(password):
                return Principal(subject="alertmanager", role=Role.operator, kind="webhook")
            if is_api_key(password):
                return await self._api_key(password)
            raise AuthError("basic auth is accepted only on the webhook, with the webhook token as password")
        if scheme != "bearer":
            raise AuthError("unsupported authorization scheme (use Bearer)")
        if webhook and self._webhook_matches(credential):
            return Principal(subject="alertmanager", role=Role.operator, kind="webhook")
        if is_api_key(credential):
            return await self._api_key(credential)
        return self._verifier.verify(credential)

    def _webhook_matches(self, value: str) -> bool:
        return bool(self._webhook_token) and hmac.compare_digest(
            value.encode("utf-8", "replace"), self._webhook_token.encode("utf-8")  # type: ignore[union-attr]
        )

    async def _api_key(self, value: str) -> Principal:
        key_id, secret = parse_api_key(value)
        stored = await self._lookup_key(key_id)
        if stored is None or not hmac.compare_digest(stored.secret_hash, hash_secret(secret)):
            raise AuthError("unknown API key")
        if stored.revoked:
            raise AuthError("API key revoked")
        return Principal(subject=f"key:{key_id}", role=stored.role, kind="api_key", key_id=key_id)


def _split(authorization: str | None) -> tuple[str | None, str]:
    if not authorization or not authorization.strip():
        return None, ""
    scheme, _, credential = authorization.strip().partition(" ")
    if not credential.strip():
        raise AuthError("malformed Authorization header (expected '<scheme> <credential>')")
    return scheme.lower(), credential.strip()


def _basic_password(credential: str) -> str:
    try:
        decoded = base64.b64decode(credential, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthError("malformed basic auth") from None
    _user, sep, password = decoded.partition(":")
    if not sep:
        raise AuthError("malformed basic auth")
    return password


__all__ = [
    "ApiKey",
    "ApiKeyCreate",
    "AuthError",
    "Authenticator",
    "Forbidden",
    "LOCAL_PRINCIPAL",
    "NewApiKey",
    "Principal",
    "Role",
    "StoredKey",
    "TokenVerifier",
    "auth_enabled",
    "generate_api_key",
    "hash_secret",
    "issue_token",
    "parse_api_key",
    "webhook_token",
]
