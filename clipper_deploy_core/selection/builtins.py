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


EXPLORATION = 0.05  # the share of queries Exp3 spreads evenly over the models, so none is ever starved


class _Exponential(SelectionPolicy):
    """Exponential weights over the linked models, learned from feedback: after each piece, every model's weight is
    multiplied by ``exp(-eta * loss)``, its loss 0 when its output matched the label and 1 otherwise (feedback is
    judged on every linked model, as in the Clipper paper). Kept as log-weights, so they never overflow."""

    learns_from_feedback = True
    name = ""

    def __init__(self, models: Sequence[str], params: Mapping[str, Any], state: Mapping[str, Any] | None) -> None:
        super().__init__(models, params, state)
        _no_params(self.name, params, ["eta"])
        eta = params.get("eta", 0.1)
        if isinstance(eta, bool) or not isinstance(eta, int | float) or not math.isfinite(eta) or eta <= 0:
            raise PolicyError(f"eta must be a number above 0, got {eta!r}")
        if not self.models:
            raise PolicyError(f"policy '{self.name}' needs at least one linked model")
        self.eta = float(eta)
        saved = dict((state or {}).get("log_weights", {}))
        self.log_weights = {m: float(saved.get(m, 0.0)) for m in self.models}  # a model linked later starts at 0
        self.feedback = int((state or {}).get("feedback", 0))
        self.random = random.Random()

    def weights(self) -> dict[str, float]:
        """Each model's normalised weight."""
        top = max(self.log_weights.values())
        raw = {m: math.exp(lw - top) for m, lw in self.log_weights.items()}
        total = sum(raw.values())
        return {m: w / total for m, w in raw.items()}

    def observe(self, outputs: Mapping[str, str | None], label: str) -> None:
        """Multiply each model's weight by ``exp(-eta)`` unless its output matched the label."""
        for m in self.models:
            if not matches(outputs.get(m), label):
                self.log_weights[m] -= self.eta
        self.feedback += 1

    def state(self) -> dict[str, Any]:
        """The log-weights and the number of pieces of feedback."""
        return {"log_weights": self.log_weights, "feedback": self.feedback}

    def describe(self) -> dict[str, Any]:
        """The normalised weights and the feedback learned from."""
        return {"weights": self.weights(), "feedback": self.feedback}


class Exp3(_Exponential):
    """``eta`` (default 0.1): the paper's bandit. Each query goes to one model, drawn with probability
    ``(1 - 0.05) * weight + 0.05 / models``, so the models that match the feedback get most of the traffic while the
    others keep being tried."""

    name = "exp3"

    def probabilities(self) -> dict[str, float]:
        """The chance each model answers the next query."""
        k = len(self.models)
        return {m: (1 - EXPLORATION) * w + EXPLORATION / k for m, w in self.weights().items()}

    def select(self, uid: str | None) -> list[str]:
        """One model, drawn by :meth:`probabilities`."""
        u, running = self.random.random(), 0.0
        for m, p in self.probabilities().items():
            running += p
            if u < running:
                return [m]
        return [self.models[-1]]

    def describe(self) -> dict[str, Any]:
        """The weights, each model's chance of answering, and the feedback learned from."""
        return {**super().describe(), "probabilities": self.probabilities()}


class Exp4(_Exponential):
    """``eta`` (default 0.1): the paper's ensemble. Every query goes to every linked model; the outputs that arrive
    within the SLO are combined with the learned weights: a weighted mean when every output is a number, else a
    weighted vote among equal outputs."""

    name = "exp4"

    def select(self, uid: str | None) -> list[str]:
        """Every linked model."""
        return list(self.models)

    def combine(self, outputs: Mapping[str, str]) -> str | None:
        """The weighted mean of numeric outputs, or the output with the most weight behind it."""
        weights = self.weights()
        numbers = {m: as_number(o) for m, o in outputs.items()}
        if all(v is not None for v in numbers.values()):
            total = sum(weights[m] for m in numbers)
            mean = sum(weights[m] * v for m, v in numbers.items() if v is not None) / total
            return str(int(mean)) if mean.is_integer() else repr(mean)
        votes: dict[str, float] = {}
        for m, o in outputs.items():
            votes[o] = votes.get(o, 0.0) + weights[m]
        return max(votes, key=lambda o: votes[o])


def as_number(text: str | None) -> float | None:
    """The output as a finite number, if it is one."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def matches(output: str | None, label: str) -> bool:
    """Whether a model's output agrees with a label: as numbers when both are numbers, else as text."""
    if output is None:
        return False
    a, b = as_number(output), as_number(label)
    if a is not None and b is not None:
        return a == b
    return output.strip() == label.strip()
