"""Exceptions raised by clipper-deploy. Names and hierarchy follow Clipper's ``clipper_admin.exceptions``."""

from __future__ import annotations


class ClipperException(Exception):
    """Every error clipper-deploy raises on purpose. ``msg`` carries the message, as in Clipper."""

    def __init__(self, msg: str, *args: object) -> None:
        super().__init__(msg, *args)
        self.msg = msg

    def __str__(self) -> str:
        return self.msg


class UnconnectedException(ClipperException):
    """A connection method was called before ``start_clipper()`` or ``connect()``."""

    def __init__(self, msg: str = "No connection to Clipper cluster. Call ClipperConnection.connect to "
                 "connect to an existing cluster or ClipperConnection.start_clipper to create a new one") -> None:
        super().__init__(msg)


class AdminTokenError(ClipperException):
    """The cluster refuses the admin token a manager holds: raised by ``connect()``, before any mutation."""


class BundleError(ClipperException):
    """A model bundle cannot be written or loaded (wrong Python, missing plugin, bad manifest)."""


class BundleIntegrityError(BundleError):
    """A bundle's files do not match the sha256 digests in its manifest."""


class PredictContractError(ClipperException):
    """A predict function broke the batch contract: one string per input."""
