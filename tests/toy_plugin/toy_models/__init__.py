"""A stand-in "framework" with its own native save format (JSON), for the toy plugin."""

from __future__ import annotations

import json
from pathlib import Path


class Polynomial:
    """y = sum(c_i * x^i), applied to the sum of each input vector."""

    def __init__(self, coefficients: list[float]) -> None:
        self.coefficients = list(coefficients)

    def __call__(self, x: float) -> float:
        return sum(c * x**i for i, c in enumerate(self.coefficients))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"coefficients": self.coefficients}))

    @classmethod
    def load(cls, path: Path) -> Polynomial:
        return cls(json.loads(path.read_text())["coefficients"])


class Quadratic(Polynomial):
    """A subclass: the toy plugin claims it through the base class."""
