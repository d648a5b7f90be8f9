"""The bundle manifest: what a bundle holds and everything needed to load it, in one JSON file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import BundleError

MANIFEST_NAME = "manifest.json"
FUNC_NAME = "func.pkl"
MODEL_DIR = "model"
WARMUP_NAME = "warmup.json"  # the deploy's sample inputs (wire form): a replica answers them before it links
FORMAT_VERSION = 1


def python_minor(version: str | None = None) -> str:
    """``"3.11"`` for ``version`` ``"3.11.7"``; by default this interpreter's (pickles load on that minor only)."""
    return ".".join((version or platform.python_version()).split(".")[:2])


@dataclass(frozen=True)
class PluginRef:
    name: str
    distribution: str
    version: str
    api_version: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    input_type: str
    plugin: PluginRef
    python_version: str  # "3.11.7"; the minor must match at load time
    cloudpickle_version: str
    framework_versions: dict[str, str] = field(default_factory=dict)
    model_metadata: dict[str, Any] = field(default_factory=dict)
    pkgs_to_install: list[str] = field(default_factory=list)
    preload: list[str] = field(default_factory=list)  # modules a replica template may import before it forks
    files: dict[str, str] = field(default_factory=dict)  # relative posix path -> sha256 hex
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def python_minor(self) -> str:
        return python_minor(self.python_version)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST_NAME) -> Manifest:
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            fmt = raw.get("format_version")
            if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
                raise BundleError(f"{where}: bundle format_version {fmt!r} is not supported by this clipper-deploy "
                                  f"(supports up to {FORMAT_VERSION}); upgrade clipper-deploy-core")
            raw["plugin"] = PluginRef(**raw["plugin"])
            return cls(**raw)
        except BundleError:
            raise
        except (ValueError, TypeError, KeyError) as e:
            raise BundleError(f"{where} is not a valid clipper-deploy manifest: {type(e).__name__}: {e}") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundle_digest(bundle_dir: Path) -> str:
    """The bundle's identity: the sha256 of its manifest, which in turn pins every file's sha256."""
    return sha256_file(Path(bundle_dir) / MANIFEST_NAME)
