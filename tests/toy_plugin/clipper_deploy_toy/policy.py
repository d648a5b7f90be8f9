"""A third-party selection policy, registered through the same entry-point group as the built-ins."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from clipper_deploy_core.selection.policy import PolicyError, SelectionPolicy


class RoundRobin(SelectionPolicy):
    """Each query to the next linked model in turn; ``skip`` names models to leave out."""

    def __init__(self, models: Sequence[str], params: Mapping[str, Any], state: Mapping[str, Any] | None) -> None:
        super().__init__(models, params, state)
        skip = params.get("skip", [])
        if set(params) - {"skip"} or not isinstance(skip, list):
            raise PolicyError("policy 'round-robin' takes only skip=[model names]")
        self.turns = itertools.cycle([m for m in self.models if m not in skip] or self.models)

    def select(self, uid: str | None) -> list[str]:
        return [next(self.turns)]
