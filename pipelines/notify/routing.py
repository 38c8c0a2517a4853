"""Which channels hear of an incident: routes by category, severity and service (globs).

A route names a channel and, optionally, the categories, severities and service globs it
takes; an empty list takes everything. The first rule that routes nothing is no rule: with no
routes configured, every configured channel hears of every incident.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.schemas import Category, Severity

ChannelName = Literal["slack", "pagerduty", "webhook"]
CHANNELS: tuple[ChannelName, ...] = ("slack", "pagerduty", "webhook")


class NotifyRoute(BaseModel):
    """One entry of ``RCA_NOTIFY_ROUTES``: ``{"channel": "pagerduty", "severities": ["critical"]}``."""

    model_config = ConfigDict(extra="forbid")

    channel: ChannelName
    categories: list[Category] = Field(default_factory=list)
    severities: list[Severity] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list, description="globs, e.g. 'payments-*'")

    def matches(self, category: str | None, severity: str, service: str | None) -> bool:
        if self.categories and category not in {c.value for c in self.categories}:
            return False
        if self.severities and severity not in {s.value for s in self.severities}:
            return False
        if self.services and not any(fnmatchcase(service or "", glob) for glob in self.services):
            return False
        return True


def route(
    routes: list[NotifyRoute], configured: set[str], category: str | None, severity: str, service: str | None
) -> list[str]:
    """The configured channels that take this incident, in the order of ``CHANNELS``."""
    if not routes:
        wanted = set(configured)
    else:
        wanted = {r.channel for r in routes if r.matches(category, severity, service)} & configured
    return [c for c in CHANNELS if c in wanted]
