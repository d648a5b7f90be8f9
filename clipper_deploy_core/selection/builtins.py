"""The built-in selection policies, registered under ``clipper_deploy.selection_policies`` like any other."""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from .policy import PolicyError, SelectionPolicy


def _no_params(name: str, params: Mapping[str, Any], allowed: Sequence[str] = ()) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no parameters"
        raise PolicyError(f"policy '{name}' {takes}; got {', '.join(unknown)}")


def uid_fraction(uid: str) -> float:
    """A stable number in [0, 1) for a user id: the same user lands on the same side of every split."""
    return int.from_bytes(hashlib.blake2b(uid.encode(), digest_size=8).digest(), "big") / 2**64


class Default(SelectionPolicy):
    """One model: the first one linked answers every query (Clipper's behaviour)."""

    def __init__(self, models: Sequence[str], params: Mapping[str, Any], state: Mapping[str, Any] | None) -> None:
        super().__init__(models, params, state)
        _no_params("default", params)

    def select(self, uid: str | None) -> list[str]:
        """The first linked model."""
        return self.models[:1]


class Weighted(SelectionPolicy):
    """``weights={model: number}``: each query goes to one model, with probability proportional to its weight (a
    canary at 5, a blue/green switch at 100). A query with a ``uid`` always goes to the same model while the
    weights stay, and a user stays on a model whose share grows. Linked models without a weight get none."""

    def __init__(self, models: Sequence[str], params: Mapping[str, Any], state: Mapping[str, Any] | None) -> None:
        super().__init__(models, params, state)
        _no_params("weighted", params, ["weights"])
        weights = params.get("weights")
        if not isinstance(weights, Mapping) or not weights:
            raise PolicyError("policy 'weighted' needs weights={model_name: number, ...} for the linked models")
        for name, w in weights.items():
            if name not in self.models:
                raise PolicyError(f"weights names model '{name}', which is not linked to this app "
                                  f"(linked: {', '.join(self.models) or 'none'})")
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
                raise PolicyError(f"weights['{name}'] must be a number of 0 or more, got {w!r}")
        self.weights = {m: float(weights.get(m, 0)) for m in self.models}
        total = sum(self.weights.values())
        if total <= 0:
            raise PolicyError("weights must give at least one linked model a weight above 0")
        self.chosen = [m for m in self.models if self.weights[m] > 0]
        running, self.bounds = 0.0, []
        for m in self.chosen:
            running += self.weights[m] / total
            self.bounds.append(running)
        self.random = random.Random()

    def select(self, uid: str | None) -> list[str]:
        """One model, drawn by weight; by the uid's stable fraction when the query has one."""
        u = uid_fraction(uid) if uid is not None else self.random.random()
        return [self.chosen[min(bisect.bisect_right(self.bounds, u), len(self.chosen) - 1)]]

    def describe(self) -> dict[str, Any]:
        """Each linked model's share of queries, as the weights set it."""
        total = sum(self.weights.values())
        return {"shares": {m: w / total for m, w in self.weights.items()}}
