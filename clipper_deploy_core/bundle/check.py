"""Load a bundle in a fresh process, exactly as a replica does, and optionally predict on samples.

``python -m clipper_deploy_core.bundle.check BUNDLE [--inputs IN.json] [--result OUT.json]``
exits 0 on success (writing ``{"outputs": [...]}`` to ``--result``) and 1 with the traceback on
stderr otherwise. ``deploy()`` runs it before a bundle goes anywhere.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..exceptions import ClipperException
from ..inputs import validate_input

CHECK_TIMEOUT_S = float(os.environ.get("CLIPPER_DEPLOY_CHECK_TIMEOUT", "300"))


def to_wire(input_type: str, inputs: Sequence[Any]) -> list[Any]:
    """Sample inputs (lists, numpy arrays, str, bytes) in the JSON form the query frontend receives."""
    out: list[Any] = []
    for x in inputs:
        if input_type == "bytes":
            if not isinstance(x, bytes | bytearray):
                raise ClipperException(f"sample inputs for input type bytes must be bytes, got {type(x).__name__}")
            out.append(base64.b64encode(bytes(x)).decode())
        else:
            out.append(x.tolist() if hasattr(x, "tolist") else x)
    return out


def run_check(bundle_dir: Path, input_type: str, sample_inputs: Sequence[Any] | None = None,
              python: str | None = None, env: dict[str, str] | None = None) -> list[str] | None:
    """Run the check in a fresh interpreter; return the outputs for ``sample_inputs`` (if any).

    Raises ``ClipperException`` carrying the fresh process's own traceback when anything fails.
    """
    with tempfile.TemporaryDirectory(prefix="clipper-check-") as tmp:
        cmd = [python or sys.executable, "-m", "clipper_deploy_core.bundle.check", str(bundle_dir),
               "--result", f"{tmp}/result.json"]
        if sample_inputs is not None:
            wire = to_wire(input_type, sample_inputs)
            for i, x in enumerate(wire):
                validate_input(input_type, x, f"sample input {i}")
            Path(tmp, "inputs.json").write_text(json.dumps(wire))
            cmd += ["--inputs", f"{tmp}/inputs.json"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise ClipperException(f"Loading the bundle in a fresh process took more than {CHECK_TIMEOUT_S:.0f}s "
                                   f"(set CLIPPER_DEPLOY_CHECK_TIMEOUT to allow more)") from None
        if proc.returncode != 0:
            raise ClipperException(
                "The model bundle failed to load in a fresh Python process, as a replica would load it. "
                "The deploy was stopped. Traceback from that process:\n" + (proc.stderr.strip() or proc.stdout.strip())
            )
        outputs: list[str] | None = json.loads(Path(tmp, "result.json").read_text()).get("outputs")
        return outputs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipper_deploy_core.bundle.check")
    parser.add_argument("bundle")
    parser.add_argument("--inputs")
    parser.add_argument("--result")
    args = parser.parse_args(argv)
    # Imported here so that a broken install shows up as this process's traceback, not the parent's.
    from .reader import load_bundle

    loaded = load_bundle(args.bundle)
    result: dict[str, Any] = {"name": loaded.manifest.name, "version": loaded.manifest.version}
    if args.inputs:
        wire = json.loads(Path(args.inputs).read_text())
        inputs = [validate_input(loaded.manifest.input_type, x, f"sample input {i}") for i, x in enumerate(wire)]
        result["outputs"] = loaded.predict(inputs)
    if args.result:
        Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
