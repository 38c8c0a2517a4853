"""An analysis as a person reads it in a terminal (rich), for ``rca analyze`` and ``rca demo``.

Blocks rather than wide tables: evidence lines are long and terminals are often 80 columns.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from pipelines.schemas import Analysis

RISK_STYLE = {"low": "green", "medium": "yellow", "high": "red"}


def render_analysis(analysis: Analysis, title: str = "Root-cause analysis") -> Panel:
    c = analysis.classification
    parts: list[RenderableType] = [
        Text.assemble(
            ("Category ", "bold"), (c.category.value, "bold magenta"), (f" ({c.confidence:.0%})", "dim"),
            ("   reasoner ", "bold"), (analysis.reasoner, "cyan"), ("   incident ", "bold"), (analysis.incident_id, "dim"),
        )
    ]
    if analysis.degraded:
        parts.append(Text("Degraded: " + "; ".join(analysis.degraded_reasons), style="yellow"))
    parts += [Text(""), Text(analysis.summary), Text(""), Text("Hypotheses, most likely first", style="bold underline")]
    for i, h in enumerate(analysis.hypotheses, start=1):
        parts.append(Text.assemble((f"{i}. {h.service or '-'}", "bold"), f"  {h.cause}", (f"  [{h.category.value}, {h.confidence:.2f}]", "dim")))
        parts += [Text(f"   • {e}", style="dim") for e in h.evidence[:4]]
    parts += [Text(""), Text("Remediation", style="bold underline")]
    for s in analysis.remediation:
        parts.append(Text.assemble((f"{s.step}. ", "bold"), s.action, "  ", (s.risk_level.value, RISK_STYLE[s.risk_level.value])))
        if s.command:
            parts.append(Text(f"   $ {s.command}", style="cyan"))
        parts.append(Text(f"   → {s.expected_outcome}", style="dim"))
    st = analysis.stats
    dropped = ", ".join(f"{k} {v}" for k, v in st.lines_dropped.items()) or "none"
    timing = ", ".join(f"{k} {v:.2f}s" for k, v in analysis.timings.items())
    parts += [Text(""), Text(f"{st.lines_in} lines in ({dropped} dropped), {st.templates} templates, {st.anomalies} anomalies, "
                             f"{st.services} services, {st.chunks} chunks | {timing}", style="dim")]
    return Panel(Group(*parts), title=title, border_style="blue")
