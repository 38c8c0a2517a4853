"""The one backoff schedule of the streaming code: how long to wait before the ``attempt``-th retry.

A broker that is down is waited for, never given up on (an alert is never lost), so the schedule
grows to a ceiling and stays there instead of ending.
"""

from __future__ import annotations

RETRY_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def backoff_seconds(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based); the last step repeats."""
    return RETRY_BACKOFF_SECONDS[min(max(attempt, 0), len(RETRY_BACKOFF_SECONDS) - 1)]
