"""FastAPI side of authentication and the audit trail: route dependencies and one middleware.

- :func:`require` is a dependency per role (``Depends(require(Role.operator))``): it
  authenticates the request (``pipelines.auth.Authenticator``), answers 401 saying why or 403
  naming the role needed, and binds the caller as the audit actor of every change the request
  makes (``pipelines.audit.bind``). The security schemes appear in the OpenAPI document.
- :class:`AuditTrail` writes one audit row per API call once its status is known, with the
  caller (or ``anonymous`` and the reason a credential was refused), the route, the incident
  and the client address. Writing it never fails the request.

The authenticator and the audit writer are given by the ingress at start-up (:func:`configure`).

No ``from __future__ import annotations``: Serve pickles the routes' dependencies by value,
and FastAPI must find real types on them in the replica.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from pydantic import BaseModel
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines import audit, metrics
from pipelines.audit import AuditContext, AuditEntry
from pipelines.auth import AuthError, Authenticator, Forbidden, Principal, Role

log = logging.getLogger(__name__)

AUDITED_PREFIXES = ("/api/", "/analyze", "/webhook/")

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="A JWT (HS256/RS256/ES256) or an API key rca_<id>_<secret>"
)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey", description="An API key")
webhook_basic_scheme = HTTPBasic(
    auto_error=False, scheme_name="webhookBasic", description="Alertmanager basic_auth: any user, the webhook token as password"
)

class Problem(BaseModel):
    """Every error answer of the API: what was wrong, and for bad input each field that was."""

    detail: str
    errors: list[str] | None = None


# Documented on every protected route, so clients and schema checks know these answers.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or invalid credentials; the detail says why"},
    403: {"model": Problem, "description": "Authenticated, but the role is not enough; the detail names the role needed"},
    422: {"model": Problem, "description": "Bad input; the detail names each bad field"},
    429: {"model": Problem, "description": "Too many requests from this client; see Retry-After"},
}


def _unauthorized(reason: str) -> HTTPException:
    metrics.count_rejected("unauthenticated")
    return HTTPException(
        status_code=401,
        detail=f"not authenticated: {reason}",
        headers={"WWW-Authenticate": 'Bearer realm="rca", error="invalid_token"'},
    )


async def _authenticate(request: Request, role: Role, *, webhook: bool) -> Principal:
    authenticator = _configured.get("authenticator")
    if authenticator is None:  # not configured: refuse rather than let anyone in
        raise HTTPException(status_code=503, detail="authentication is not configured yet", headers={"Retry-After": "5"})
    try:
        principal = await authenticator.authenticate(
            request.headers.get("authorization"), request.headers.get("x-api-key"), webhook=webhook
        )
    except AuthError as exc:
        request.state.auth_failure = exc.reason
        raise _unauthorized(exc.reason) from None
    request.state.principal = principal
    try:
        principal.require(role)
    except Forbidden as exc:
        metrics.count_rejected("forbidden")
        raise HTTPException(status_code=403, detail=str(exc)) from None
    audit.bind(context_of(request, principal))
    return principal


def context_of(request: Request, principal: Principal | None) -> AuditContext:
    """The audit actor of this request."""
    state = request.scope.get("state", {})
    return _context(request.scope, state, principal)


def _context(scope: Scope, state: dict[str, Any], principal: Principal | None) -> AuditContext:
    route = scope.get("route")
    path = getattr(route, "path", None) or scope.get("path", "")
    client = state.get("client") or (scope.get("client") or ("unknown", 0))[0]
    return AuditContext(
        actor=principal.subject if principal else "anonymous",
        actor_kind=principal.kind if principal else "anonymous",
        key_id=principal.key_id if principal else None,
        role=principal.role.value if principal and principal.role else None,
        client=str(client)[:100],
        method=scope.get("method"),
        route=str(path)[:300],
        request_id=state.get("request_id"),
    )


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller must hold ``role`` (or a stronger one)."""

    async def dependency(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
        _key: Annotated[str | None, Security(api_key_scheme)] = None,
    ) -> Principal:
        return await _authenticate(request, role, webhook=False)

    dependency.__name__ = f"require_{role.value}"
    return dependency


async def require_webhook(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
    _basic: Annotated[HTTPBasicCredentials | None, Security(webhook_basic_scheme)] = None,
) -> Principal:
    """The webhook: the webhook token (bearer or basic password), or any operator credential."""
    return await _authenticate(request, Role.operator, webhook=True)


AuditWriter = Callable[[AuditEntry], Awaitable[None]]
_configured: dict[str, Any] = {}


def configure(authenticator: Authenticator, audit_writer: AuditWriter) -> None:
    """Called once by the ingress replica: how to check credentials and where audit rows go."""
    _configured["authenticator"] = authenticator
    _configured["audit_writer"] = audit_writer


class AuditTrail:
    """ASGI middleware: one ``request`` audit row per API call, with the status answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(AUDITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["request_id"] = audit.new_request_id()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            await self._write(scope, state, status)

    @staticmethod
    async def _write(scope: Scope, state: dict[str, Any], status: int) -> None:
        writer: AuditWriter | None = _configured.get("audit_writer")
        if writer is None:
            return
        detail: dict[str, Any] = {}
        if state.get("auth_failure"):
            detail["refused"] = state["auth_failure"]
        incident_id = state.get("incident_id") or (scope.get("path_params") or {}).get("incident_id")
        try:
            entry = AuditEntry(
                context=_context(scope, state, state.get("principal")),
                action="request",
                incident_id=str(incident_id) if incident_id else None,
                status=status,
                detail=audit.bounded_detail(detail),
            )
            await writer(entry)
        except Exception:  # noqa: BLE001 - the answer is sent; a lost audit row is logged, never raised
            log.exception("could not write the audit row of %s %s", scope.get("method"), scope.get("path"))


__all__ = ["AUTH_RESPONSES", "Problem", "AuditTrail", "configure", "context_of", "require", "require_webhook"]
