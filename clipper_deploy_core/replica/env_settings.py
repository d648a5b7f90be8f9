"""The replica's tuning knobs, read from its environment once as it starts.

Each is a duration in some unit. A value that is not a finite, non-negative number (a typo, ``-5``, ``inf``) is
named in the replica's log and the default is used instead: a typo costs the tuning, not the replica, and an
infinite poll window would spin an idle replica for ever.
"""

from __future__ import annotations

import math
import os


def seconds_from_env(name: str, default: float, unit: str, per_second: float) -> float:
    """``name``, a number of ``unit`` (``per_second`` of them in a second), in seconds; ``default`` (in ``unit``)
    when it is unset or not a finite, non-negative number."""
    raw = os.environ.get(name)
    if raw is None:
        return default / per_second
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        print(f"replica: {name}={raw!r} is not a number of {unit}; using {default:g}", flush=True)
        value = default
    return value / per_second
