"""Ingress deployment: the HTTP API (FastAPI) in front of the pipeline.

No ``from __future__ import annotations`` here: FastAPI must see real types on the routes.

Thin by design: routes validate input, call ``IncidentService`` or the ``Store``, and turn
known failures into clear 4xx/503 answers. Every route but ``/health`` needs a role
(``deployments/auth.py``); every API call is audited; limits (rate, body size, lines) are
enforced before any work (``deployments/body_limit.py``). The stages run in their own deployments and
are reached through the handles given at composition (``pipelines/app.py``).
"""


import asyncio
import functools
import logging
import sys
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from anomaly import AnomalyReport, Digest, MetricFrame
from deployments.auth import AUTH_RESPONSES, AuditTrail, Problem, require, require_webhook
from deployments.auth import configure as configure_auth
from deployments.body_limit import BodySizeLimit, BodyTooLarge, RateLimit, RateLimiter, parse_networks
from deployments.ui import configure as configure_pages
from deployments.ui import router as pages_router
from pipelines import metrics
from pipelines.audit import AuditEntry, AuditPage
from pipelines.auth import ApiKey, ApiKeyCreate, Authenticator, NewApiKey, Role, StoredKey, generate_api_key
from pipelines.feedback import FeedbackError, recall
from pipelines.incidents import IncidentService
from pipelines.notify.outbox import NotificationDelivery, Outbox
from pipelines.notify.worker import DeliveryWorker
from pipelines.history import HistoryJob
from pipelines.pipeline import AnalysisPipeline, Chunk
from pipelines.reasoning.base import Evidence, Verdict
from pipelines.schemas import (
    AlertmanagerWebhook,
    Analysis,
    AnalyzeRequest,
    Category,
    Feedback,
    FeedbackCreate,
    FeedbackList,
    Incident,
    IncidentPage,
    RemediationStep,
    Severity,
    SimilarIncident,
    Stats,
)
from pipelines.settings import Settings
from pipelines.sources import build_sources, gather_context
from pipelines.store import ApiKeyNotFound, IncidentNotFound, Store
from pipelines.log_setup import configure_logging

log = logging.getLogger(__name__)

api = FastAPI(
    title="Incident root-cause analyzer",
    version="0.1.0",
    description="Alerts in; ranked root causes with evidence and remediation out.",
)
# The last added runs first: audit (sees every answer) -> rate limit -> body size -> routes.
api.add_middleware(BodySizeLimit)
api.add_middleware(RateLimit)
api.add_middleware(AuditTrail)
api.include_router(pages_router)  # the incident pages, /ui (deployments/ui/)

VIEWER = [Depends(require(Role.viewer))]
OPERATOR = [Depends(require(Role.operator))]
ADMIN = [Depends(require(Role.admin))]


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Name each bad field (``body.alert.timestamp: Field required``) instead of a raw dump."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    metrics.count_rejected("invalid_input")
    return JSONResponse(status_code=422, content={"detail": "; ".join(problems[:20]), "errors": problems[:100]})


def body_problem(cause: BaseException | None) -> tuple[int, str, str]:
    """Why a body could not be read: (status, rejection reason, what to tell the caller).

    FastAPI turns every failure while reading and decoding a body into one bare 400; the
    exception it wraps says which it was: over the size limit while streaming (a chunked
    body declares no length), nested deeper than the JSON decoder's recursion allows, or bytes
    that are not UTF-8.
    """
    if isinstance(cause, BodyTooLarge):
        return 413, "body_too_large", str(cause)
    if isinstance(cause, RecursionError):
        return 422, "too_deep", ("body: JSON nested too deeply to decode (the decoder stops near "
                                 f"{MAX_JSON_DEPTH} levels; no body of this API needs more than 10)")
    if isinstance(cause, UnicodeDecodeError):
        return 422, "invalid_input", f"body: not valid JSON (undecodable bytes: {cause.reason} at byte {cause.start})"
    return 422, "invalid_input", f"body: could not be decoded ({type(cause).__name__ if cause else 'unknown error'})"


#: where Python's JSON decoder gives up (its recursion limit, less what the server's stack holds)
MAX_JSON_DEPTH = sys.getrecursionlimit()


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI answers a body it could not read with a bare 400; say what was wrong (see ``body_problem``)."""
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        status, reason, problem = body_problem(exc.__cause__)
        metrics.count_rejected(reason)
        content: dict[str, Any] = {"detail": problem} if status == 413 else {"detail": problem, "errors": [problem]}
        return JSONResponse(status_code=status, content=content)
    return await http_exception_handler(request, exc)


@api.exception_handler(BodyTooLarge)
async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
    metrics.count_rejected("body_too_large")
    return JSONResponse(status_code=413, content={"detail": str(exc)})


@api.exception_handler(asyncpg.PostgresConnectionError)
@api.exception_handler(asyncpg.InterfaceError)
@api.exception_handler(ConnectionError)
@api.exception_handler(OSError)
async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    """The database went away after start-up: 503 so the caller (Alertmanager) retries; nothing is half-stored."""
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=503,
        content={"detail": f"database unavailable ({type(exc).__name__}: {exc}); retry later"},
        headers={"Retry-After": "5"},
    )


@api.exception_handler(IncidentNotFound)
async def _not_found(request: Request, exc: IncidentNotFound) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


@api.exception_handler(FeedbackError)
async def _bad_feedback(request: Request, exc: FeedbackError) -> JSONResponse:
    """Feedback that points at no hypothesis of the analysis: 422 naming the field."""
    metrics.count_rejected("invalid_input")
    return JSONResponse(status_code=422, content={"detail": str(exc), "errors": [str(exc)]})


@api.exception_handler(ApiKeyNotFound)
async def _key_not_found(request: Request, exc: ApiKeyNotFound) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


class ServiceUnavailable(HTTPException):
    def __init__(self, what: str) -> None:
        super().__init__(status_code=503, detail=what, headers={"Retry-After": "5"})


MAX_UNIX_SECONDS = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last time datetime can hold
MAX_ABS_VALUE = 1e18  # beyond any real metric; keeps the scorer's arithmetic finite


def out_of_range(request: AnalyzeRequest) -> str | None:
    """The first metric point or span outside what the stages can compute on, named; None when all fit.

    Checked before any work (the contract allows any float; NaN and infinities would only fail
    deep inside the scorer). Alert times are checked by the schema itself, on every path.
    """
    for where, telemetry in (("", request), ("baseline.", request.baseline)):
        if telemetry is None:
            continue
        for i, series in enumerate(telemetry.metrics):
            for j, (t, v) in enumerate(series.points):
                if not (0 <= t <= MAX_UNIX_SECONDS) or not (abs(v) <= MAX_ABS_VALUE):
                    return (f"body.{where}metrics.{i}.points.{j}: time must be unix seconds between 0 and "
                            f"{MAX_UNIX_SECONDS:.0f} and the value finite within ±{MAX_ABS_VALUE:g}")
        for i, span in enumerate(telemetry.spans):
            if not (0 <= span.start <= MAX_UNIX_SECONDS) or not (0 <= span.duration_ms <= MAX_ABS_VALUE):
                return f"body.{where}spans.{i}: start must be unix seconds and duration_ms finite and not negative"
    return None


@serve.deployment(name="Ingress", num_replicas=1, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        settings: Settings,
        summarizer: DeploymentHandle,
        scorer: DeploymentHandle,
        reasoner: DeploymentHandle,
    ) -> None:
        configure_logging(settings.log_level)
        self._settings = settings
        self._summarizer = summarizer
        self._scorer = scorer
        self._reasoner = reasoner
        self._pipeline = AnalysisPipeline(
            self._summarize_chunk,
            self._score,
            self._reason,
            chunk_lines=settings.chunk_lines,
            min_chunks=settings.summarizer_replicas,
        )
        self._store: Store | None = None
        self._service: IncidentService | None = None
        self._connect_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()
        self._publisher: Any = None
        # notifications (README "Notify"): the delivery worker is a task of this replica's event loop
        self._notifier = DeliveryWorker.from_settings(settings)
        if self._notifier is not None:
            self._notifier.start()
        # history upkeep (README "History"): partitions ahead and archival, a daily task of this replica
        self._history_job = HistoryJob(self._history_pass, settings.history_job_seconds) \
            if settings.history_job_seconds else None
        if self._history_job is not None:
            self._history_job.start()
        BodySizeLimit.limit = settings.max_body_bytes
        RateLimit.limiter = RateLimiter(settings.rate_limit_per_minute)
        RateLimit.trusted = parse_networks(settings.trusted_proxies)
        configure_auth(Authenticator(settings, self._find_key), self._write_audit)
        configure_pages(self._store_ready)
        if settings.kafka_bootstrap:
            from pipelines.streaming.reader import ensure_reader

            ensure_reader(settings, app_name=serve.get_replica_context().app_name)

    def __del__(self) -> None:
        """Serve calls this when the replica stops: end the delivery worker (its rows stay in the outbox)."""
        notifier = getattr(self, "_notifier", None)
        if notifier is not None:
            notifier.cancel()
        history_job = getattr(self, "_history_job", None)
        if history_job is not None:
            history_job.cancel()

    # ---------------------------------------------------------------- stage adapters

    async def _summarize_chunk(self, chunk: Chunk) -> Digest:
        return await self._summarizer.summarize_chunk.remote(chunk)

    async def _score(
        self, window: Digest, baseline: Digest | None, metrics_: MetricFrame, baseline_metrics: MetricFrame | None
    ) -> AnomalyReport:
        return await self._scorer.score.remote(window, baseline, metrics_, baseline_metrics)

    async def _reason(self, evidence: Evidence) -> Verdict:
        return await self._reasoner.reason.remote(evidence)

    async def _incidents(self) -> IncidentService:
        """Connect to the database on first use, so a database that is down answers 503, not a dead replica."""
        if self._service is not None:
            return self._service
        async with self._connect_lock:
            if self._service is None:
                try:
                    self._store = await Store.connect(self._settings.database_url or "",
                                                outbox=Outbox.from_settings(self._settings),
                                                read_url=self._settings.database_read_url)
                except Exception as exc:
                    raise ServiceUnavailable(f"database unavailable: {exc}") from exc
                sources = build_sources(self._settings)
                gather = functools.partial(gather_context, sources) if sources else None
                self._service = IncidentService(
                    self._store,
                    self._pipeline,
                    context_window_seconds=self._settings.context_window_seconds,
                    gather_context=gather,
                    context_wait_seconds=self._settings.context_wait_seconds,
                    recall=functools.partial(recall, self._store) if self._settings.recall_history else None,
                )
        return self._service

    async def _history_pass(self) -> None:
        store = await self._store_ready()
        await store.ensure_partitions()
        await store.archive(self._settings.retention_days)

    async def _store_ready(self) -> Store:
        await self._incidents()
        assert self._store is not None
        return self._store

    async def _find_key(self, key_id: str) -> StoredKey | None:
        store = await self._store_ready()
        return await store.find_api_key(key_id)

    async def _write_audit(self, entry: AuditEntry) -> None:
        store = await self._store_ready()
        await store.append_audit(entry)

    # ---------------------------------------------------------------- Python API (Kafka reader, CLI)

    async def process_alert(self, alert: dict, context: Any = None, delivery: str | None = None) -> dict:
        """Record and analyze one alert with the Kafka reader's context (an ``IncidentContext`` of merged
        digests and spans), or with lines (``{"logs": [...], "spans": [...], "baseline": {...}}``).

        Idempotent: the Kafka reader names the delivery, so a retry is answered as the first try.
        """
        from pipelines.schemas import Alert, IncidentContext, Telemetry

        if isinstance(context, IncidentContext):
            service = await self._incidents()
            return await service.process_alert(Alert.model_validate(alert), delivery=delivery, streamed=context)
        context = context or {}
        window = Telemetry(logs=context.get("logs") or [], spans=context.get("spans") or [])
        before = context.get("baseline") or {}
        baseline = Telemetry(logs=before.get("logs") or [], spans=before.get("spans") or [])
        service = await self._incidents()
        return await service.process_alert(
            Alert.model_validate(alert), window, delivery, baseline if baseline.logs or baseline.spans else None
        )

    async def analyze(self, request: AnalyzeRequest | dict) -> dict:
        """The same as ``POST /analyze``, for callers that hold a handle (CLI, evaluation)."""
        service = await self._incidents()
        if not isinstance(request, AnalyzeRequest):
            request = AnalyzeRequest.model_validate(request)
        analysis = await service.analyze_request(request)
        return analysis.model_dump(mode="json")

    # ---------------------------------------------------------------- HTTP API

    @api.get("/health", tags=["operations"])
    async def health(self) -> dict:
        database = "ok"
        try:
            store = await self._store_ready()
            await store.ping()
        except Exception as exc:
            database = f"unavailable: {exc}"
        kafka: dict[str, Any] | str = "disabled"
        if self._settings.kafka_bootstrap:
            kafka = await self._reader_stats()
        healthy = database == "ok" and (not isinstance(kafka, dict) or kafka.get("state") != "unavailable")
        return {
            "status": "ok" if healthy else "degraded",
            "database": database,
            "reasoner": f"llm:{self._settings.openai_model}" if self._settings.llm_configured else "evidence",
            "kafka": kafka,
        }

    async def _reader_stats(self) -> dict[str, Any]:
        """The Kafka reader's counts, DLQ, drops, lag and buffers; never fails /health."""
        from pipelines.streaming.reader import get_reader

        reader = get_reader(serve.get_replica_context().app_name)
        if reader is None:
            return {"bootstrap": self._settings.kafka_bootstrap, "state": "unavailable", "reason": "no reader actor"}
        try:
            await asyncio.wait_for(reader.start.remote(), timeout=5)  # resumes an actor Ray restarted
            return await asyncio.wait_for(reader.stats.remote(), timeout=5)
        except Exception as exc:
            return {"bootstrap": self._settings.kafka_bootstrap, "state": "unavailable", "reason": f"{type(exc).__name__}: {exc}"}

    @api.get("/metrics", tags=["operations"], include_in_schema=False, dependencies=VIEWER)
    async def metrics_endpoint(self) -> Response:
        body, content_type = await asyncio.to_thread(metrics.render_latest)
        return Response(content=body, media_type=content_type)

    @api.post(
        "/analyze",
        response_model=Analysis,
        tags=["analysis"],
        dependencies=OPERATOR,
        responses={**AUTH_RESPONSES, 413: {"model": Problem, "description": "Body or lines over the limit"}},
    )
    async def analyze_http(self, request: AnalyzeRequest, http: Request) -> Analysis:
        """Analyze one alert with the logs, metrics and spans given (and configured sources)."""
        problem = out_of_range(request)
        if problem:
            metrics.count_rejected("invalid_input")
            raise HTTPException(status_code=422, detail=problem)
        if len(request.logs) > self._settings.max_lines_per_request:
            metrics.count_rejected("too_many_lines")
            raise HTTPException(
                status_code=413,
                detail=f"logs: {len(request.logs)} lines, more than the limit of "
                f"{self._settings.max_lines_per_request} (RCA_MAX_LINES_PER_REQUEST)",
            )
        service = await self._incidents()
        analysis = await service.analyze_request(request)
        http.state.incident_id = analysis.incident_id
        return analysis

    @api.post(
        "/webhook/alertmanager",
        status_code=202,
        tags=["alerts"],
        dependencies=[Depends(require_webhook)],
        responses={**AUTH_RESPONSES, 413: {"model": Problem, "description": "Body over the limit"}},
    )
    async def alertmanager_webhook(self, payload: AlertmanagerWebhook) -> dict:
        """Alertmanager's webhook (version 4). With Kafka: published, then 202. Without: analyzed here."""
        valid, rejected = payload.valid_alerts()
        for rejection in rejected:
            metrics.count_rejected("invalid_alert")
            log.warning("webhook alert rejected: %s", rejection.error)
        if not valid:
            raise HTTPException(status_code=422, detail="; ".join(r.error for r in rejected[:5]))
        alerts = [a.to_alert() for a in valid]
        answer: dict[str, Any] = {"accepted": len(alerts), "rejected": [r.model_dump() for r in rejected]}
        if self._settings.kafka_bootstrap:
            await self._publish(alerts)
            return {**answer, "via": "kafka"}
        service = await self._incidents()
        for alert in alerts:
            task = asyncio.create_task(self._process_logged(service, alert))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return {**answer, "via": "direct"}

    async def _process_logged(self, service: IncidentService, alert: Any) -> None:
        try:
            await service.process_alert(alert)
        except Exception:
            log.exception("alert %s (%s) could not be processed", alert.name, alert.identity())

    async def _publish(self, alerts: list[Any]) -> None:
        from pipelines.streaming.producer import AlertPublisher, KafkaUnavailable

        try:
            if self._publisher is None:
                publisher = AlertPublisher.from_settings(self._settings)
                await publisher.start()
                self._publisher = publisher
            await self._publisher.publish(alerts)
        except KafkaUnavailable as exc:
            raise ServiceUnavailable(f"kafka unavailable: {exc}") from exc

    @api.get("/api/incidents", response_model=IncidentPage, tags=["incidents"], dependencies=VIEWER,
             responses=AUTH_RESPONSES)
    async def list_incidents(
        self,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 20,
        classification: Category | None = None,
        service: Annotated[str | None, Query(max_length=200)] = None,
        severity: Severity | None = None,
        status: Annotated[str | None, Query(pattern="^(open|resolved)$")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        include_archived: Annotated[bool, Query(description="also incidents resolved more than "
                                                "RCA_RETENTION_DAYS ago (archived)")] = False,
    ) -> IncidentPage:
        store = await self._store_ready()
        return await store.list_incidents(
            include_archived=include_archived,
            page=page,
            page_size=page_size,
            category=classification,
            service=service,
            severity=severity,
            status=status,
            since=since,
            until=until,
        )

    @api.get("/api/incidents/{incident_id}", response_model=Incident, tags=["incidents"], dependencies=VIEWER,
             responses={**AUTH_RESPONSES, 404: {"model": Problem, "description": "No such incident"}})
    async def get_incident(self, incident_id: str) -> Incident:
        store = await self._store_ready()
        return await store.get_incident(incident_id)

    @api.get("/api/incidents/{incident_id}/notifications", response_model=list[NotificationDelivery],
             tags=["incidents"], dependencies=VIEWER,
             responses={**AUTH_RESPONSES, 404: {"model": Problem, "description": "No such incident"}})
    async def get_notifications(self, incident_id: str) -> list[NotificationDelivery]:
        """What was told to Slack, PagerDuty and the webhook about this incident, and every attempt (README "Notify")."""
        store = await self._store_ready()
        return await store.notifications(incident_id)

    @api.get("/api/incidents/{incident_id}/remediation", response_model=list[RemediationStep], tags=["incidents"],
             dependencies=VIEWER, responses={**AUTH_RESPONSES, 404: {"model": Problem, "description": "No such incident or no analysis"}})
    async def get_remediation(self, incident_id: str) -> list[RemediationStep]:
        store = await self._store_ready()
        incident = await store.get_incident(incident_id)
        if incident.analysis is None:
            raise HTTPException(status_code=404, detail=f"incident {incident_id!r} has no analysis yet")
        return incident.analysis.remediation

    @api.post("/api/incidents/{incident_id}/feedback", response_model=Feedback, status_code=201, tags=["feedback"],
              dependencies=OPERATOR, responses={**AUTH_RESPONSES, 404: {"model": Problem, "description": "No such incident"}})
    async def add_feedback(self, incident_id: Annotated[str, Path(max_length=100)], body: FeedbackCreate) -> Feedback:
        """Which hypothesis was right (``rank``), or the real cause (``category`` and ``service``), with notes.

        Every feedback is kept and audited; the latest is in force. It teaches the analyses of
        similar incidents that come after (README "Feedback and similar incidents").
        """
        store = await self._store_ready()
        return await store.add_feedback(incident_id, body)

    @api.get("/api/incidents/{incident_id}/feedback", response_model=FeedbackList, tags=["feedback"],
             dependencies=VIEWER, responses={**AUTH_RESPONSES, 404: {"model": Problem, "description": "No such incident"}})
    async def list_feedback(self, incident_id: Annotated[str, Path(max_length=100)]) -> FeedbackList:
        """Every feedback on the incident, newest first; ``current`` is the one in force."""
        store = await self._store_ready()
        items = await store.list_feedback(incident_id)
        return FeedbackList(incident_id=incident_id, current=items[0] if items else None, items=items)

    @api.get("/api/incidents/{incident_id}/similar", response_model=list[SimilarIncident], tags=["feedback"],
             dependencies=VIEWER, responses={**AUTH_RESPONSES, 404: {"model": Problem, "description": "No such incident"}})
    async def similar_incidents(self, incident_id: Annotated[str, Path(max_length=100)],
                                limit: Annotated[int, Query(ge=1, le=50)] = 10) -> list[SimilarIncident]:
        """Past incidents most like this one (weighted Jaccard of the signatures), with their confirmed cause."""
        store = await self._store_ready()
        return await store.similar(incident_id, limit=limit)

    @api.get("/api/stats", response_model=Stats, tags=["incidents"], dependencies=VIEWER, responses=AUTH_RESPONSES)
    async def stats(
        self, days: Annotated[int | None, Query(ge=1, le=36_500, description="only incidents started in the last N days")]
        = None,
    ) -> Stats:
        store = await self._store_ready()
        return await store.stats(since=datetime.now(timezone.utc) - timedelta(days=days) if days else None)

    # ---------------------------------------------------------------- admin: audit trail and API keys

    @api.get("/api/audit", response_model=AuditPage, tags=["admin"], dependencies=ADMIN, responses=AUTH_RESPONSES)
    async def list_audit(
        self,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
        actor: Annotated[str | None, Query(max_length=200)] = None,
        action: Annotated[str | None, Query(max_length=100)] = None,
        route: Annotated[str | None, Query(max_length=300)] = None,
        incident_id: Annotated[str | None, Query(max_length=100)] = None,
        status: Annotated[int | None, Query(ge=100, le=599)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AuditPage:
        """The audit trail, newest first: every API call and every change, with who, when and the outcome."""
        store = await self._store_ready()
        return await store.list_audit(page=page, page_size=page_size, actor=actor, action=action, route=route,
                                      incident_id=incident_id, status=status, since=since, until=until)

    @api.get("/api/keys", response_model=list[ApiKey], tags=["admin"], dependencies=ADMIN, responses=AUTH_RESPONSES)
    async def list_keys(self) -> list[ApiKey]:
        store = await self._store_ready()
        return await store.list_api_keys()

    @api.post("/api/keys", response_model=NewApiKey, status_code=201, tags=["admin"], dependencies=ADMIN,
              responses=AUTH_RESPONSES)
    async def create_key(self, body: ApiKeyCreate) -> NewApiKey:
        """A new API key; its value is shown in this answer only (the database keeps a hash)."""
        store = await self._store_ready()
        value, key_id, secret_hash = generate_api_key()
        key = await store.create_api_key(key_id, body.name, body.role, secret_hash)
        return NewApiKey(**key.model_dump(), api_key=value)

    @api.delete("/api/keys/{key_id}", response_model=ApiKey, tags=["admin"], dependencies=ADMIN,
                responses={**AUTH_RESPONSES, 404: {"model": Problem, "description": "No such key"}})
    async def revoke_key(self, key_id: Annotated[str, Path(max_length=64)]) -> ApiKey:
        """Revoke a key: from now on it is refused (idempotent)."""
        store = await self._store_ready()
        return await store.revoke_api_key(key_id)
