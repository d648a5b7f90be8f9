"""The arguments every deploy takes besides the model: labels, replica count and batch size, checked where they
enter (``ClipperConnection.deploy_model`` and the deployers). Kept apart from the deployers so that importing
``ClipperConnection`` does not import the bundle writer and the plugin registry."""

from __future__ import annotations

from collections.abc import Sequence

from .exceptions import ClipperException


def validate_labels(labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return []
    if isinstance(labels, str) or not all(isinstance(lb, str) for lb in labels):
        raise ClipperException(f"labels must be a list of strings, got {labels!r}")
    for lb in labels:
        if "," in lb or ":" in lb:
            raise ClipperException(f"Invalid label {lb!r}: labels must not contain ',' or ':'")
    return list(labels)


def validate_deploy_args(num_replicas: object, batch_size: object) -> None:
    if not isinstance(num_replicas, int) or isinstance(num_replicas, bool) or num_replicas < 0:
        raise ClipperException(f"num_replicas must be an integer >= 0, got {num_replicas!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not (batch_size == -1 or batch_size > 0):
        raise ClipperException(f"batch_size must be a positive integer, or -1 for adaptive batching; "
                               f"got {batch_size!r}")
