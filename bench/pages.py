"""How long the incident page takes to render (a benchmark, never a test).

The simulated DNS outage (a 10-minute window of about 4,400 lines from 9 services, a
10-minute baseline) goes through the real stages in this process; its analysis has 3
hypotheses, the cited templates and metrics, and 20 anomalies. Then the page of that incident
is rendered ``--repeat`` times as ``GET /ui/incidents/{id}`` renders it (timeline, evidence
links, the Jinja2 template; the store read and HTTP are not included), and one JSON object
is printed: median, 95th percentile and worst render time, the page's size, and how many bytes
of JSON ``Analysis.cited`` and the whole analysis take for each simulated scenario (seed 5).

    .venv/bin/python bench/pages.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.ui.citations import links  # noqa: E402
from deployments.ui.pages import templates  # noqa: E402
from deployments.ui.timeline import build_timeline  # noqa: E402
from pipelines.schemas import Alert, Category, Incident, IncidentContext, Telemetry  # noqa: E402
from pipelines.simulate import SCENARIOS, simulate  # noqa: E402
from tests.support.local_pipeline import local_pipeline  # noqa: E402


async def _incident(scenario: str = "dns_failure") -> Incident:
    body = simulate(scenario, seed=5).request_body()
    alert = Alert.model_validate(body["alert"])
    context = IncidentContext(alert=alert, window=Telemetry(logs=body["logs"], metrics=body["metrics"]),
                              baseline=Telemetry.model_validate(body["baseline"]))
    analysis = await local_pipeline().analyze("00000000-0000-0000-0000-00000000bench", context)
    return Incident(id=analysis.incident_id, alert_name=alert.name, service=alert.labels.get("service"),
                    severity=alert.severity, status="open", fingerprint="bench", started_at=alert.timestamp,
                    created_at=alert.timestamp, alert=alert, analysis=analysis)


def render(incident: Incident) -> str:
    """The incident page as the route renders it, for an operator (the feedback form shown)."""
    assert incident.analysis is not None
    return templates.get_template("incident.html").render(
        principal=None, incident=incident, analysis=incident.analysis, timeline=build_timeline(incident),
        links=links(incident.analysis), similar=[], feedback=None, feedback_form=True, categories=list(Category))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    incident = asyncio.run(_incident())
    assert incident.analysis is not None
    render(incident)  # the template is compiled once per process
    seconds = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        html = render(incident)
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    sizes = {}
    for scenario in SCENARIOS:
        analysis = asyncio.run(_incident(scenario)).analysis
        assert analysis is not None
        sizes[scenario] = {"cited_bytes": len(analysis.cited.model_dump_json()), "analysis_bytes": len(analysis.model_dump_json())}
    window = incident.analysis.window_range
    print(json.dumps({
        "benchmark": "incident page render",
        "repeat": args.repeat,
        "hypotheses": len(incident.analysis.hypotheses),
        "window_minutes": round((window.end - window.start).total_seconds() / 60, 1) if window else None,
        "window_lines": incident.analysis.stats.lines_in,
        "anomalies": len(incident.analysis.anomalies),
        "cited_templates": len(incident.analysis.cited.templates),
        "cited_metrics": len(incident.analysis.cited.metrics),
        "render_ms_median": round(1000 * statistics.median(seconds), 2),
        "render_ms_p95": round(1000 * seconds[int(0.95 * (len(seconds) - 1))], 2),
        "render_ms_max": round(1000 * seconds[-1], 2),
        "page_kib": round(len(html.encode()) / 1024, 1),
        "stored_json_by_scenario": sizes,
    }))


if __name__ == "__main__":
    main()
