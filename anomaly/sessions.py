"""Session anomaly detection: is this sequence of events unlike every normal session?

Each session becomes an event-count vector (one column per event seen while
fitting, one for events never seen, one for the length), in log1p space. Fitting
reads only sessions, never labels. A session is anomalous when it holds an event
never seen while fitting, or when its nearest fitted session is farther away than
any fitted session is from its own nearest neighbour (the widest gap observed
among normal sessions: the novelty threshold comes from the data, not from a knob).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.neighbors import NearestNeighbors


class SessionDetector:
    """Nearest-neighbour novelty detection over per-session event-count vectors."""

    def __init__(self, *, quantile: float = 1.0) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        self.quantile = quantile
        self.vocabulary: dict[str, int] = {}
        self.threshold: float = 0.0
        self._index: NearestNeighbors | None = None

    def _vectors(self, sessions: Iterable[Sequence[str]]) -> np.ndarray:
        n = len(self.vocabulary)
        rows = []
        for events in sessions:
            v = np.zeros(n + 2)
            for e in events:
                i = self.vocabulary.get(e)
                if i is None:
                    v[n] += 1
                else:
                    v[i] += 1
            v[n + 1] = len(events)
            rows.append(v)
        return np.log1p(np.asarray(rows).reshape(len(rows), n + 2))

    def fit(self, sessions: Iterable[Sequence[str]]) -> SessionDetector:
        sessions = [list(s) for s in sessions]
        if not sessions:
            raise ValueError("no sessions to fit on")
        self.vocabulary = {e: i for i, e in enumerate(sorted({e for s in sessions for e in s}))}
        x = self._vectors(sessions)
        unique, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        self._index = NearestNeighbors(n_neighbors=1).fit(unique)
        if len(unique) > 1:
            dist, _ = NearestNeighbors(n_neighbors=2).fit(unique).kneighbors(unique)
            loo = np.where(counts[inverse] > 1, 0.0, dist[inverse, 1])
            self.threshold = float(np.quantile(loo, self.quantile))
        return self

    def distances(self, sessions: Iterable[Sequence[str]]) -> np.ndarray:
        """Distance to the nearest fitted session (inf when an unseen event occurs)."""
        if self._index is None:
            raise RuntimeError("SessionDetector.fit must be called first")
        x = self._vectors(sessions)
        if len(x) == 0:
            return np.zeros(0)
        dist, _ = self._index.kneighbors(x)
        out = dist[:, 0]
        out[x[:, len(self.vocabulary)] > 0] = np.inf
        return out

    def predict(self, sessions: Iterable[Sequence[str]]) -> np.ndarray:
        """True where a session is anomalous."""
        return self.distances(sessions) > self.threshold
