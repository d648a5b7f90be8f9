"""Batch-size policies: a fixed cap (``batch_size > 0``) or AIMD (``batch_size = -1``).

AIMD follows the Clipper paper: after each batch, grow the cap by one when the batch was full and
its latency fitted the budget, and halve it when the latency went over. The budget is half the
SLO: a query can wait behind one batch in flight and then ride in the next, so two batch latencies
must fit in the SLO. One policy per model version and replica, since replicas can differ in speed.
"""

from __future__ import annotations

ADDITIVE_STEP = 1
BACKOFF = 0.5
BUDGET_FRACTION = 0.5
MAX_BATCH = 1024


class FixedCap:
    """``batch_size=N``: every batch holds at most N inputs."""
    def __init__(self, cap: int) -> None:
        self.cap = cap

    def observe(self, size: int, latency_s: float, slo_s: float) -> None:
        """A fixed cap learns nothing from a batch."""
        pass


class AIMD:
    """``batch_size=-1``: the cap grows by one while batches fill and meet the SLO, and backs off when one misses it."""
    def __init__(self, start: int = 1, max_cap: int = MAX_BATCH) -> None:
        self.cap = start
        self.max_cap = max_cap

    def observe(self, size: int, latency_s: float, slo_s: float) -> None:
        """Adjust the cap after a batch of ``size`` inputs took ``latency`` seconds against ``slo``."""
        if latency_s > slo_s * BUDGET_FRACTION:
            self.cap = max(1, int(self.cap * BACKOFF))
        elif size >= self.cap:
            self.cap = min(self.max_cap, self.cap + ADDITIVE_STEP)


def policy_for(batch_size: int) -> FixedCap | AIMD:
    """The batch-size policy for a model version's ``batch_size``."""
    return FixedCap(batch_size) if batch_size > 0 else AIMD()
