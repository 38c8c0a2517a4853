"""Notifications that are never lost: Slack, PagerDuty and a signed webhook, through an outbox.

``outbox.py`` writes what is to be said in the same transaction as the analysis or the
resolve; ``worker.py`` delivers it, with retries; one module per channel renders the request.
"""
