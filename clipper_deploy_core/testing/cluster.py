"""Helpers for end-to-end plugin tests: a throwaway local cluster, queries over HTTP, and signatures."""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..http_client import request

SEED_ENV = "CLIPPER_DEPLOY_SEED"
SEED_SIGNATURES = "seed_signatures.json"  # the document's signatures, kept as test data


def wait_until(check: Callable[[], Any], what: str = "condition", timeout: float = 30.0) -> None:
    """Poll ``check`` until it is true; fail (naming ``what``) after ``timeout`` seconds. For conditions that
    other processes make true (a replica restarted, a container replaced), never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def local_cluster(name: str, home: Path | str, **options: Any) -> Iterator[Any]:
    """A started ``ClipperConnection`` on free ports, state under ``home``; stopped (no process left) on exit.
    ``options`` go to ``LocalContainerManager`` (``frontends=2``, ``cache_size=0``, ...)."""
    from ..clipper_connection import ClipperConnection
    from ..managers.local import LocalContainerManager

    conn = ClipperConnection(LocalContainerManager(name, 0, 0, 0, home=home, **options))
    conn.start_clipper()
    try:
        yield conn
    finally:
        conn.stop_all()


def query(conn: Any, app: str, body: Any, timeout: float = 120.0) -> tuple[int, Any]:
    """POST ``body`` (JSON-encoded unless it is ``bytes``) to ``/<app>/predict``: ``(status, decoded reply)``."""
    status, text = request("POST", f"http://{conn.get_query_addr()}/{app}/predict", body, timeout)
    return status, json.loads(text)


def predict(conn: Any, app: str, body: Any, timeout: float = 120.0) -> Any:
    """The reply of a query that must succeed (HTTP 200)."""
    status, reply = query(conn, app, body, timeout)
    if status != 200:
        raise AssertionError(f"/{app}/predict answered {status}: {reply}")
    return reply


def outputs(conn: Any, app: str, inputs: list[Any]) -> list[Any]:
    """The ``output`` of each input, sent as one ``input_batch``."""
    reply = predict(conn, app, {"input_batch": inputs})
    return [p["output"] for p in reply["batch_predictions"]] if "batch_predictions" in reply else [reply["output"]]


def signature(func: Callable[..., Any]) -> str:
    """``func``'s parameters as Clipper's docs print them: ``a, b, c='default', d=None``."""
    return ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                     for p in inspect.signature(func).parameters.values())


def seed_signature(qualified: str, seed_file: Path | None = None) -> str | None:
    """The documented signature of ``qualified`` (e.g. ``clipper_admin.deployers.pytorch.create_endpoint``)
    in Clipper's model-deployers document, or ``None`` when the entry is absent. Without the document (any clone
    that has no ``shared/`` beside it), the signatures kept in ``seed_signatures.json`` answer."""
    import os

    candidates = [seed_file] if seed_file else [Path(os.environ[SEED_ENV])] if SEED_ENV in os.environ else [
        parent / "shared" / "seed" / "model-deployers.txt" for parent in Path.cwd().resolve().parents]
    for path in candidates:
        if path and path.is_file():
            match = re.search(re.escape(qualified) + r"\((.*?)\)\[source\]", path.read_text())
            return match.group(1) if match else None
    if seed_file is not None:
        return None
    kept: dict[str, str] = json.loads((Path(__file__).parent / SEED_SIGNATURES).read_text())
    return kept.get(qualified)
