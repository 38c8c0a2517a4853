"""The incident timeline: where the stored analysis's anomalies fall in time, per service.

Pure: an ``Incident`` in, a ``Timeline`` (coordinates ready for an inline SVG) out. It reads
only what the analysis stored: time-bucket anomalies (their bucket start), metric anomalies
(their ``"<ISO time> <value>"`` evidence points) and template/service anomalies (the times
their exemplar lines carry); the templates the evidence cites (``Analysis.cited``) as a bar from
their first line to their last in their service's lane; the alert's start and the detected onset
(``Analysis.onset``) as lines. No log line is copied: a mark's title names the anomaly, never
its lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from deployments.ui.citations import readable
from pipelines.schemas import Anomaly, CitedTemplate, Incident

WIDTH = 960
LABEL_WIDTH = 170
LANE_HEIGHT = 30
TOP = 20
AXIS_HEIGHT = 30
MAX_LANES = 10
ALL_SERVICES = "all services"
#: times further than this from the alert are taken as misread (an id that looks like a date)
PLAUSIBLE = timedelta(days=1)

_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True)
class Mark:
    """One anomaly at one time: ``kind`` is bucket, metric or log (the SVG class)."""

    x: float
    y: float
    r: float
    kind: str
    title: str


@dataclass(frozen=True)
class Bar:
    """A cited template from its first line to its last, in its service's lane."""

    x1: float
    x2: float
    y: float
    title: str


@dataclass(frozen=True)
class Lane:
    label: str
    y: float


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    plot_left: int
    plot_bottom: float
    lanes: list[Lane]
    marks: list[Mark]
    ticks: list[Tick]
    alert_x: float
    alert_label: str
    start: datetime
    end: datetime
    left_out: int = 0
    services: list[str] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    onset_x: float | None = None
    onset_label: str = ""


def parse_time(text: str) -> datetime | None:
    """The first ISO-like timestamp in ``text`` (UTC when it names no zone), or None."""
    found = _TIME.search(text)
    if not found:
        return None
    date, clock, fraction, zone = found.groups()
    zone = "+00:00" if zone in (None, "Z") else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
    try:
        return datetime.fromisoformat(f"{date}T{clock}{fraction or ''}{zone}").astimezone(timezone.utc)
    except ValueError:
        return None


def _events(anomaly: Anomaly) -> list[tuple[datetime, str, str]]:
    """(time, lane, title) of each moment this anomaly points at."""
    lane = anomaly.service or ALL_SERVICES
    score = f"score {anomaly.score:.2f}"
    if anomaly.kind == "time_bucket":
        when = parse_time(anomaly.subject)
        return [(when, ALL_SERVICES, f"{anomaly.subject}: {anomaly.detail} ({score})")] if when else []
    if anomaly.kind == "metric":
        out = []
        for point in anomaly.evidence:
            when = parse_time(point)
            value = point.rsplit(" ", 1)[-1] if " " in point else ""
            if when:
                out.append((when, lane, f"{lane} {anomaly.subject} = {value} at {when:%H:%M:%S} ({anomaly.detail})"))
        return out
    subject = anomaly.subject if len(anomaly.subject) <= 160 else anomaly.subject[:157] + "..."
    what = anomaly.detail if anomaly.kind == "service" else f"{subject} - {anomaly.detail}"
    times = sorted({t for t in (parse_time(line) for line in anomaly.evidence) if t})
    return [(t, lane, f"{lane}: {what} ({score})") for t in times]


def _spans(template: CitedTemplate) -> list[tuple[datetime, datetime, str, str]]:
    """(first, last, lane, title) of a cited template, when it has times."""
    if template.first_seen is None or template.last_seen is None:
        return []
    lane = next(iter(template.services), ALL_SERVICES)
    text = readable(template)
    text = text if len(text) <= 120 else text[:117] + "..."
    return [(template.first_seen, template.last_seen, lane, f"{lane}: '{text}' x{template.count}")]


def build_timeline(incident: Incident) -> Timeline | None:
    """The timeline of the incident's analysis; None when it has no analysis or no timed anomaly."""
    if incident.analysis is None:
        return None
    alert_at = incident.alert.timestamp.astimezone(timezone.utc)

    def near(when: datetime) -> bool:
        return abs(when - alert_at) <= PLAUSIBLE

    events: list[tuple[datetime, str, str, Anomaly | None]] = [
        (when, lane, title, anomaly)
        for anomaly in incident.analysis.anomalies
        for when, lane, title in _events(anomaly)
        if near(when)
    ]
    spans = [s for t in incident.analysis.cited.templates for s in _spans(t) if near(s[0]) and near(s[1])]
    events += [(when, lane, title, None) for first, last, lane, title in spans for when in (first, last)]
    onset = incident.analysis.onset
    onset = onset.astimezone(timezone.utc) if onset is not None and near(onset) else None
    if not events:
        return None
    ranked = [h.service for h in incident.analysis.hypotheses if h.service]
    others = sorted({lane for _, lane, _, _ in events} - set(ranked) - {ALL_SERVICES})
    order = [s for s in dict.fromkeys([*ranked, *others]) if any(lane == s for _, lane, _, _ in events)]
    if any(lane == ALL_SERVICES for _, lane, _, _ in events):
        order = order[: MAX_LANES - 1] + [ALL_SERVICES]
    order = order[:MAX_LANES]
    kept = [e for e in events if e[1] in order]

    bounds = [alert_at, *(e[0] for e in kept), *([onset] if onset else [])]
    start, end = min(bounds), max(bounds)
    span = max((end - start).total_seconds(), 60.0)
    start -= timedelta(seconds=span * 0.03)
    end = start + timedelta(seconds=span * 1.06)
    total = (end - start).total_seconds()
    plot_width = WIDTH - LABEL_WIDTH - 20

    def x_of(when: datetime) -> float:
        return round(LABEL_WIDTH + plot_width * (when - start).total_seconds() / total, 1)

    lanes = [Lane(label=name, y=TOP + LANE_HEIGHT * i + LANE_HEIGHT / 2) for i, name in enumerate(order)]
    y_of = {lane.label: lane.y for lane in lanes}
    kinds = {"time_bucket": "bucket", "metric": "metric"}
    marks = [
        Mark(x=x_of(when), y=y_of[lane], r=round(3 + 5 * max(0.0, min(1.0, anomaly.score)), 1),
             kind=kinds.get(anomaly.kind, "log"), title=title)
        for when, lane, title, anomaly in kept
        if anomaly is not None
    ]
    bars = [Bar(x1=x_of(first), x2=max(x_of(last), x_of(first) + 2), y=y_of[lane], title=title)
            for first, last, lane, title in spans if lane in y_of]
    plot_bottom = TOP + LANE_HEIGHT * len(lanes)
    ticks = [
        Tick(x=x_of(start + timedelta(seconds=total * i / 6)),
             label=f"{start + timedelta(seconds=total * i / 6):%H:%M:%S}")
        for i in range(7)
    ]
    return Timeline(
        width=WIDTH,
        height=int(plot_bottom + AXIS_HEIGHT),
        plot_left=LABEL_WIDTH,
        plot_bottom=plot_bottom,
        lanes=lanes,
        marks=marks,
        ticks=ticks,
        alert_x=x_of(alert_at),
        alert_label=f"alert {alert_at:%H:%M:%S}",
        start=start,
        end=end,
        left_out=len(events) - len(kept),
        services=[s for s in order if s != ALL_SERVICES],
        bars=bars,
        onset_x=x_of(onset) if onset else None,
        onset_label=f"onset {onset:%H:%M:%S}" if onset else "",
    )


__all__ = ["ALL_SERVICES", "Bar", "Lane", "Mark", "Tick", "Timeline", "build_timeline", "parse_time"]
