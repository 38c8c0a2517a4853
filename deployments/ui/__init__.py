"""Incident pages for people: server-rendered HTML over the stored analyses (see ``pages.py``)."""

from deployments.ui.pages import configure, router

__all__ = ["configure", "router"]
