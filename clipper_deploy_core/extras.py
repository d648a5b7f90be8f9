"""Optional dependencies: a clear error naming the extra to install, instead of a bare ModuleNotFoundError."""

from __future__ import annotations

import importlib.util

from .exceptions import ClipperException


class MissingExtra(ClipperException):
    """A feature needs a package that is installed with one of clipper-deploy-core's extras."""


def require_extra(module: str, extra: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"{what} needs the '{module}' package: pip install 'clipper-deploy-core[{extra}]' "
                           f"(from a clone: pip install -e '.[{extra}]')")
