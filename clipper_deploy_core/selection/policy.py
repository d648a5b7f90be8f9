"""The selection-policy contract: what a policy is given, what it answers, and when each method is called.

The frontend keeps one policy object per app, made from the app's linked models, the parameters given to
``set_selection_policy`` and the state the policy last saved. It is rebuilt whenever one of those changes.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class PolicyError(ValueError):
    """A parameter a policy cannot take, or a link set it cannot serve; the message names what is wrong."""


class SelectionPolicy(abc.ABC):
    """Chooses, for each query, which of an app's linked models answer it."""

    #: Whether feedback changes what the policy does; a policy that learns nothing says so in the feedback reply.
    learns_from_feedback: ClassVar[bool] = False

    def __init__(self, models: Sequence[str], params: Mapping[str, Any], state: Mapping[str, Any] | None) -> None:
        """Check ``params`` against the linked ``models`` (names, in link order) and take up ``state`` (what
        :meth:`state` returned last, or ``None`` for a new policy). Raises :class:`PolicyError` naming the parameter
        that is wrong. Called: by ``set_selection_policy`` (with ``state=None``), and by the frontend when the app's
        links, parameters or saved state change."""
        self.models = list(models)
        self.params = dict(params)

    @abc.abstractmethod
    def select(self, uid: str | None) -> list[str]:
        """The models that answer one query, by name (one for a router, several for an ensemble). ``uid`` is the
        query's ``"uid"`` when it has one (a policy may keep a user on one model). Called: for every input of
        every query to the app, on the query path: keep it cheap and never block."""

    def combine(self, outputs: Mapping[str, str]) -> str | None:
        """One answer from the outputs of the models :meth:`select` chose that arrived in time (``{name: output}``,
        at least one); ``None`` to answer with the app's default. Called: when :meth:`select` chose more than one
        model. The default takes the first model's output."""
        for name in self.models:
            if name in outputs:
                return outputs[name]
        return None

    def observe(self, outputs: Mapping[str, str | None], label: str) -> None:
        """Learn from one piece of feedback: every linked model's output for the input (``None`` where a model gave
        none) and the right answer. Called: by ``POST /<app>/update``, once per feedback. Only for
        :attr:`learns_from_feedback` policies. The default learns nothing."""
        return None

    def state(self) -> dict[str, Any]:
        """What the policy has learned, JSON-serializable; saved in the cluster's state after feedback and given
        back to ``__init__`` after a restart. Called: after :meth:`observe`."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What ``get_app_info`` shows under ``selection_policy`` besides the name and parameters (learned weights,
        say). Called: by ``get_app_info``."""
        return {}
