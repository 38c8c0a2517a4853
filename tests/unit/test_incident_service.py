"""IncidentService without Ray: what a request carries reaches the stored analysis, and hostile
log text is repaired and counted before the pipeline reads it."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

from pipelines.incidents import IncidentService, repair_logs
from pipelines.schemas import Analysis, AnalyzeRequest, LogEvent
from tests.support.local_pipeline import local_pipeline

ALERT = {"name": "HighErrorRate", "severity": "critical", "timestamp": "2024-01-07T10:30:00Z",
         "labels": {"service": "checkout"}}
LINES = [f"2024-01-07T10:29:{i:02d}Z ERROR [checkout] payment call failed for order {i}" for i in range(40)]


class MemoryStore:
    """The two calls IncidentService makes for ``POST /analyze``, kept in memory."""

    def __init__(self) -> None:
        self.saved: dict[str, Analysis] = {}

    async def record_alert(self, alert, delivery=None):
        return SimpleNamespace(id="00000000-0000-0000-0000-00000000000a", status="open"), True

    async def save_analysis(self, incident_id: str, analysis: Analysis) -> None:
        self.saved[incident_id] = analysis


def _service(store: MemoryStore) -> IncidentService:
    return IncidentService(store, local_pipeline(), context_window_seconds=300)  # type: ignore[arg-type]


async def test_a_requests_degraded_reasons_are_stored_on_its_analysis() -> None:
    store = MemoryStore()
    reasons = ["pod_metrics.csv: 3 malformed row(s) skipped", "ignored files that are not pod metrics: dependency.csv"]
    request = AnalyzeRequest.model_validate({"alert": ALERT, "logs": LINES, "degraded_reasons": reasons})
    analysis = await _service(store).analyze_request(request)
    stored = store.saved[analysis.incident_id]
    assert stored.degraded and all(r in stored.degraded_reasons for r in reasons)
    assert AnalyzeRequest.model_validate({"alert": ALERT}).degraded_reasons == []


async def test_lone_surrogates_and_impossible_event_times_are_repaired_and_counted() -> None:
    store = MemoryStore()
    hostile = ["2024-01-07T10:29:59Z ERROR [checkout] bad \ud800 byte",
               {"message": "event \udfff", "service": "checkout", "labels": {"k\ud800": "v"}},
               {"message": "from the far future", "timestamp": "9999-01-01T00:00:00Z", "service": "checkout"},
               {"message": "before the epoch", "timestamp": "1969-12-31T00:00:00Z", "service": "checkout"}]
    request = AnalyzeRequest.model_validate({"alert": ALERT, "logs": [*LINES, *hostile]})
    analysis = await _service(store).analyze_request(request)
    assert analysis.stats.lines_in == len(LINES) + len(hostile), "every line is kept"
    assert analysis.stats.lines_dropped.get("undecodable") == 2
    assert analysis.stats.lines_dropped.get("timestamp_out_of_range") == 2
    assert "\ud800" not in analysis.model_dump_json()


def test_repair_logs_leaves_clean_input_untouched() -> None:
    event = LogEvent(message="ok", timestamp=datetime(2024, 1, 7, tzinfo=timezone.utc))
    repairs: dict[str, int] = {}
    logs = ["plain line", event]
    out = repair_logs(logs, repairs)
    assert out == logs and out[1] is event and repairs == {}


async def test_ingress_passes_the_context_wait_to_the_incident_service(monkeypatch) -> None:
    from deployments import ingress
    from pipelines.settings import Settings

    user_class = ingress.Ingress.func_or_class.__mro__[1]  # the class under Serve's ASGI wrapper
    replica = user_class.__new__(user_class)
    user_class.__init__(replica, Settings(context_wait_seconds=42.5, database_url="postgresql://unused"), None, None, None)

    async def connect(url: str, **options):
        return MemoryStore()

    monkeypatch.setattr(ingress.Store, "connect", connect)
    service = await replica._incidents()
    assert service._after == 42.5
