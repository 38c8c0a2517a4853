"""Wilson score intervals: one implementation for every evaluation that reports a share."""

from __future__ import annotations

import math
from typing import Any

Z_95 = 1.959963984540054  # the two-sided 95 % normal quantile


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of ``successes`` out of ``total`` (None when there is no trial)."""
    if total <= 0:
        return None
    if not 0 <= successes <= total:
        raise ValueError(f"successes {successes} out of {total}")
    p = successes / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def share(successes: int, total: int, digits: int = 4) -> dict[str, Any]:
    """``{value, count, total, ci95: [low, high]}``; value and interval None when total is 0."""
    interval = wilson_interval(successes, total)
    return {
        "value": round(successes / total, digits) if total else None,
        "count": successes,
        "total": total,
        "ci95": [round(interval[0], digits), round(interval[1], digits)] if interval else None,
    }


def describe(figure: dict[str, Any]) -> str:
    """``0.667 (20/30, 95% CI 0.488-0.808)`` for a ``share`` figure."""
    if figure.get("value") is None:
        return f"- (0/{figure.get('total', 0)})"
    low, high = figure["ci95"]
    return f"{figure['value']:.3f} ({figure['count']}/{figure['total']}, 95% CI {low:.3f}-{high:.3f})"
