from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clipper_deploy_core.bundle import load_bundle, read_manifest
from clipper_deploy_core.exceptions import ClipperException


class RecordingConnection:
    """A stand-in for ClipperConnection implementing ``ConnectionInterface`` in memory.

    The serving side (frontend, replicas) is not part of the core's unit tests; this keeps
    Clipper's bookkeeping rules and copies each shipped bundle so tests can load it for real.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.apps: dict[str, dict[str, Any]] = {}
        self.models: dict[tuple[str, str], dict[str, Any]] = {}
        self.links: dict[str, list[str]] = {}

    def register_application(self, name, input_type, default_output, slo_micros):
        if name in self.apps:
            raise ClipperException(f"application '{name}' already exists")
        self.apps[name] = {"name": name, "input_type": input_type, "default_output": default_output,
                           "latency_slo_micros": slo_micros}

    def get_app_info(self, name):
        return None if name not in self.apps else {**self.apps[name], "linked_models": self.links.get(name, [])}

    def get_linked_models(self, app_name):
        return list(self.links.get(app_name, []))

    def link_model_to_app(self, app_name, model_name):
        if not any(n == model_name for n, _ in self.models):
            raise ClipperException(f"No model with name '{model_name}' exists.")
        self.links.setdefault(app_name, []).append(model_name)

    def get_all_models(self, verbose=False):
        if verbose:
            return [{"model_name": n, "model_version": v, **m} for (n, v), m in self.models.items()]
        return [f"{n}:{v}" for n, v in self.models]

    def build_and_deploy_model(self, name, version, input_type, model_data_path, base_image, labels=None,
                               container_registry=None, num_replicas=1, batch_size=-1, pkgs_to_install=None):
        if (name, version) in self.models:
            raise ClipperException(f"model with name '{name}' and version '{version}' already exists")
        dest = self.root / f"{name}-{version}"
        shutil.copytree(model_data_path, dest)
        self.models[(name, version)] = {"input_type": input_type, "image": base_image, "labels": labels,
                                        "num_replicas": num_replicas, "batch_size": batch_size, "path": dest}

    def bundle(self, name: str, version: str) -> Path:
        return self.models[(name, version)]["path"]


@pytest.fixture
def conn(tmp_path: Path) -> RecordingConnection:
    return RecordingConnection(tmp_path)


def run_python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter of this venv."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=120)


__all__ = ["RecordingConnection", "load_bundle", "read_manifest", "run_python"]
