"""Incident pages: server-rendered HTML (Jinja2, autoescaped) over the same store the JSON API reads.

Routes (all under ``/ui``, none in the OpenAPI schema):
- ``GET /ui/incidents``: the list, newest first, the API's filters, paged.
- ``GET /ui/incidents/{incident_id}``: one incident with its latest analysis and timeline, the
  similar past incidents and the feedback in force; operators also get the feedback form.
- ``POST /ui/incidents/{incident_id}/feedback``: that form (operator role).
- ``GET/POST /ui/login``, ``POST /ui/logout``: how a browser authenticates.
- ``GET /ui/static/{name}``: the stylesheet and the script (no CDN).

Authentication is the API's (``pipelines.auth.Authenticator``, role ``viewer``). A browser
cannot send a bearer header, so the login form takes the same credential (a JWT or an API
key) once in a POST body, checks it, and keeps it in an HttpOnly, SameSite=Strict cookie
scoped to ``/ui``; every page request checks it again (expiry, revocation, role). Callers that
can send ``Authorization`` or ``X-API-Key`` (curl, tests) need no cookie. With auth off (local
only), every page opens. Every response carries a strict Content-Security-Policy: scripts and
styles from this app only, nothing inline.

Form posts are CSRF-safe without a token: the cookie is SameSite=Strict (a browser never sends
it with a request another site starts) and every POST must come from this app's origin
(:func:`_same_origin`); a bearer header is never sent by a browser on its own.

The store is given by the ingress replica at start-up (:func:`configure`).
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from deployments import auth as api_auth
from deployments.ui.citations import links as citation_links
from deployments.ui.citations import readable
from deployments.ui.timeline import build_timeline
from pipelines import metrics
from pipelines.auth import AuthError, Forbidden, Principal, Role
from pipelines.schemas import Category, FeedbackCreate, Severity, describe_validation_error
from pipelines.store import IncidentNotFound, Store

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "rca_ui"
COOKIE_PATH = "/ui"
COOKIE_MAX_AGE = 8 * 3600  # a working night; a JWT's own expiry still applies on every request
MAX_PAGE_SIZE = 100
STATUSES = ("open", "resolved")
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # a POST's Origin is "null" under no-referrer (see _same_origin)
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
SIMILAR_ON_PAGE = 5
STATIC = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = lambda d: d.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if d else ""
templates.filters["pct"] = lambda v: f"{100 * float(v):.0f} %"
templates.filters["readable"] = readable
templates.filters["num"] = lambda v: "-" if v is None else f"{float(v):.4g}"

router = APIRouter(prefix="/ui", include_in_schema=False)

StoreGetter = Callable[[], Awaitable[Store]]
_configured: dict[str, Any] = {}


def configure(store: StoreGetter) -> None:
    """Called once by the ingress replica: how to reach the store (connected on first use)."""
    _configured["store"] = store


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("principal", None)
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status, headers=SECURITY_HEADERS)


def _problem(status: int, title: str, detail: str, principal: Principal | None = None) -> HTMLResponse:
    return render("problem.html", status, title=title, detail=detail, principal=principal)


async def _viewer(request: Request) -> Principal | HTMLResponse:
    """The caller if it may read incidents; otherwise the page that says why (401, 403, 503)."""
    authenticator = api_auth._configured.get("authenticator")
    if authenticator is None:
        return _problem(503, "Not ready", "authentication is not configured yet; retry in a few seconds")
    authorization, key = request.headers.get("authorization"), request.headers.get("x-api-key")
    if not authorization and not key and request.cookies.get(COOKIE):
        authorization = f"Bearer {request.cookies[COOKIE]}"
    try:
        principal = await authenticator.authenticate(authorization, key)
        return principal.require(Role.viewer)
    except AuthError as exc:
        metrics.count_rejected("unauthenticated")
        response = render("login.html", 401, reason=exc.reason)
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response
    except Forbidden as exc:
        metrics.count_rejected("forbidden")
        return _problem(403, "Not allowed", str(exc))


def _same_origin(request: Request) -> bool:
    """A form post from this app's own pages.

    Browsers say where a request comes from in ``Sec-Fetch-Site`` (all current ones) and ``Origin``
    (on every POST; ``null`` when a page's referrer policy is ``no-referrer``, which is why the pages
    send ``same-origin``). Found by the browser test: with ``no-referrer`` a real sign-in was refused.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


# ---------------------------------------------------------------- assets and sign-in

@router.get("")
async def ui_home() -> RedirectResponse:
    return RedirectResponse("/ui/incidents", status_code=303)


@router.get("/static/{name}")
async def ui_static(name: str) -> Response:
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    body = (HERE / "static" / name).read_bytes()
    return Response(body, media_type=STATIC[name],
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"})


@router.get("/login")
async def ui_login_form(request: Request) -> Response:
    return render("login.html", reason=None)


@router.post("/login")
async def ui_login(request: Request) -> Response:
    """Check the credential posted in the form; keep it in an HttpOnly cookie for the pages only."""
    if not _same_origin(request):
        metrics.count_rejected("forbidden")
        return _problem(403, "Not allowed", "sign-in is accepted only from this application's own login page")
    body = (await request.body()).decode("utf-8", "replace")
    credential = (parse_qs(body, max_num_fields=5).get("credential") or [""])[0].strip()
    if not credential:
        return render("login.html", 401, reason="missing credentials: paste a token or an API key")
    authenticator = api_auth._configured.get("authenticator")
    if authenticator is None:
        return _problem(503, "Not ready", "authentication is not configured yet; retry in a few seconds")
    try:
        (await authenticator.authenticate(f"Bearer {credential}", None)).require(Role.viewer)
    except AuthError as exc:
        metrics.count_rejected("unauthenticated")
        return render("login.html", 401, reason=exc.reason)
    except Forbidden as exc:
        metrics.count_rejected("forbidden")
        return _problem(403, "Not allowed", str(exc))
    response = RedirectResponse("/ui/incidents", status_code=303, headers={"Cache-Control": "no-store"})
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(COOKIE, credential, max_age=COOKIE_MAX_AGE, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=secure)
    return response


@router.post("/logout")
async def ui_logout(request: Request) -> Response:
    if not _same_origin(request):
        return _problem(403, "Not allowed", "sign-out is accepted only from this application's own pages")
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


# ---------------------------------------------------------------- incidents

def _when(field: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field}: not a date and time (like 2024-01-07T10:30 or 2024-01-07T10:30:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_filters(query: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The list's filters as the store takes them, and a message for each bad one (the field named)."""
    text = {k: (query.get(k) or "").strip() for k in
            ("category", "service", "severity", "status", "since", "until", "page", "page_size")}
    errors: list[str] = []
    filters: dict[str, Any] = {"page": 1, "page_size": 20}
    for field, low, high in (("page", 1, 100_000), ("page_size", 1, MAX_PAGE_SIZE)):
        if text[field]:
            if text[field].isdigit() and low <= int(text[field]) <= high:
                filters[field] = int(text[field])
            else:
                errors.append(f"{field}: a whole number from {low} to {high}")
    for field, kind in (("category", Category), ("severity", Severity)):
        if text[field]:
            try:
                filters[field] = kind(text[field])
            except ValueError:
                errors.append(f"{field}: one of {', '.join(k.value for k in kind)}")
    if text["status"]:
        if text["status"] in STATUSES:
            filters["status"] = text["status"]
        else:
            errors.append("status: open or resolved")
    if text["service"]:
        if len(text["service"]) <= 200:
            filters["service"] = text["service"]
        else:
            errors.append("service: at most 200 characters")
    for field in ("since", "until"):
        if text[field]:
            try:
                filters[field] = _when(field, text[field])
            except ValueError as exc:
                errors.append(str(exc))
    return filters, errors


@router.get("/incidents")
async def ui_incidents(request: Request) -> Response:
    principal = await _viewer(request)
    if isinstance(principal, Response):
        return principal
    query = dict(request.query_params)
    filters, errors = parse_filters(query)
    form = {k: query.get(k, "") for k in ("category", "service", "severity", "status", "since", "until")}
    if errors:
        return render("incidents.html", 400, principal=principal, page=None, errors=errors, form=form,
                      categories=list(Category), severities=list(Severity), statuses=STATUSES, links={})
    store = await _configured["store"]()
    page = await store.list_incidents(**filters)
    kept = {k: v for k, v in form.items() if v}
    if filters["page_size"] != 20:
        kept["page_size"] = str(filters["page_size"])
    pages = max(1, -(-page.total // page.page_size))
    links = {
        "previous": f"/ui/incidents?{urlencode({**kept, 'page': page.page - 1})}" if page.page > 1 else None,
        "next": f"/ui/incidents?{urlencode({**kept, 'page': page.page + 1})}" if page.page < pages else None,
    }
    return render("incidents.html", principal=principal, page=page, pages=pages, errors=[], form=form,
                  categories=list(Category), severities=list(Severity), statuses=STATUSES, links=links)


@router.get("/incidents/{incident_id}")
async def ui_incident(request: Request, incident_id: str) -> Response:
    principal = await _viewer(request)
    if isinstance(principal, Response):
        return principal
    store = await _configured["store"]()
    try:
        incident = await store.get_incident(incident_id[:100])
    except IncidentNotFound:
        return _problem(404, "No such incident", f"no incident has the id {incident_id[:100]!r}", principal)
    similar = await store.similar(incident.id, limit=SIMILAR_ON_PAGE)
    feedback = await store.list_feedback(incident.id)
    return render("incident.html", principal=principal, incident=incident, analysis=incident.analysis,
                  timeline=build_timeline(incident), similar=similar,
                  links=citation_links(incident.analysis) if incident.analysis else {}, feedback=feedback[0] if feedback else None,
                  feedback_form=principal.role is not None and principal.role.allows(Role.operator),
                  categories=list(Category))


#: form fields -> FeedbackCreate; an empty field is not given
FEEDBACK_FIELDS = ("rank", "category", "service", "notes")


def parse_feedback(body: str) -> FeedbackCreate:
    """The feedback form's body as the API's model; ValueError naming each bad field."""
    form = parse_qs(body, max_num_fields=10)
    given = {k: form[k][0].strip() for k in FEEDBACK_FIELDS if form.get(k) and form[k][0].strip()}
    try:
        return FeedbackCreate.model_validate(given)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc, empty="feedback")) from None


@router.post("/incidents/{incident_id}/feedback")
async def ui_feedback(request: Request, incident_id: str) -> Response:
    """The feedback form (operators): stored and audited as ``POST /api/incidents/{id}/feedback``."""
    principal = await _viewer(request)
    if isinstance(principal, Response):
        return principal
    if not _same_origin(request):
        metrics.count_rejected("forbidden")
        return _problem(403, "Not allowed", "feedback is accepted only from this application's own pages", principal)
    try:
        principal.require(Role.operator)
    except Forbidden as exc:
        metrics.count_rejected("forbidden")
        return _problem(403, "Not allowed", str(exc), principal)
    store = await _configured["store"]()
    try:
        body = parse_feedback((await request.body()).decode("utf-8", "replace"))
        given = await store.add_feedback(incident_id[:100], body, api_auth.context_of(request, principal))
    except IncidentNotFound:
        return _problem(404, "No such incident", f"no incident has the id {incident_id[:100]!r}", principal)
    except ValueError as exc:  # a field of the form, or a rank the analysis does not have (FeedbackError)
        metrics.count_rejected("invalid_input")
        return _problem(422, "Feedback not recorded", str(exc), principal)
    return RedirectResponse(f"/ui/incidents/{given.incident_id}#feedback-h", status_code=303)


__all__ = ["COOKIE", "configure", "parse_filters", "router"]
