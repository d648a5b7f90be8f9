"""Clipper's naming rules for apps, models and versions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .exceptions import ClipperException

_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
MAX_NAME_LENGTH = 63  # a DNS-1123 label, so names can become container and Kubernetes names
_MODULE_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
MAX_MODULE_NAME_LENGTH = 200


def validate_module_names(modules: object, what: str = "preload") -> list[str]:
    """``modules`` if it is a list of importable-looking module names (``torch``, ``tensorflow.keras``), else
    raise naming ``what``. Module names reach an ``import`` in a replica template, never a shell or ``eval``."""
    if isinstance(modules, (str, bytes)) or not isinstance(modules, (list, tuple)) or not all(
            isinstance(m, str) and len(m) <= MAX_MODULE_NAME_LENGTH and _MODULE_RE.match(m) for m in modules):
        raise ClipperException(f"{what} must be a list of module names, like ['torch'], got {modules!r}")
    return list(modules)


def validate_name(name: object, what: str = "model name") -> str:
    """Return ``name`` if it is a DNS-1123 label (what Clipper's regex enforced), else raise."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > MAX_NAME_LENGTH:
        raise ClipperException(
            f"Invalid {what} {name!r}: it must consist of lower case alphanumeric characters or '-', "
            f"start and end with an alphanumeric character, and be at most {MAX_NAME_LENGTH} characters "
            f"(e.g. 'my-name' or '123-abc')"
        )
    return name


def validate_version(version: object) -> str:
    """Versions are ``str()``-ed as in Clipper (so ``1`` and ``"1"`` are the same) and follow the name rule."""
    if isinstance(version, bool) or version is None:
        raise ClipperException(f"Invalid model version {version!r}: give a string or an integer such as '1'")
    return validate_name(str(version), "model version")


def name_from_function(func: object) -> str:
    """Derive a valid model name from a function's ``__name__`` (``predict_digits`` -> ``predict-digits``)."""
    raw = getattr(func, "__name__", "")
    if raw.startswith("<"):  # <lambda>, <locals> and friends say nothing about the model
        raw = ""
    cand = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:MAX_NAME_LENGTH].strip("-")
    if not cand or not _NAME_RE.match(cand):
        raise ClipperException(f"Cannot derive a model name from {raw or func!r}; pass name=...")
    return cand


@dataclass(frozen=True)
class ModelVersionId:
    """A model version's name, version and input type, checked once where they enter (:meth:`checked`) and trusted
    by every internal step after it."""

    name: str
    version: str
    input_type: str

    @classmethod
    def checked(cls, name: object, version: object, input_type: object) -> ModelVersionId:
        """Check each (Clipper's naming rule; a known input type, canonicalised) or raise ``ClipperException``."""
        from .inputs import canonical_input_type

        return cls(validate_name(name), validate_version(version), canonical_input_type(input_type))
