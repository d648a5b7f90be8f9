"""A small JSON-over-HTTP client on the standard library (the admin API's client side).

urllib is imported on the first request, not with this module: ``start_clipper`` imports it (:func:`warm_http_client`)
while the cluster process starts, rather than before it or after (0.2 s where nothing is precompiled)."""

from __future__ import annotations

import json
from typing import Any

from .exceptions import AdminTokenError, ClipperException

ADMIN_TOKEN_HEADER = "X-Clipper-Admin-Token"


def warm_http_client() -> None:
    """Import what the first :func:`request` would."""
    import urllib.error
    import urllib.request  # noqa: F401


def request(method: str, url: str, body: Any = None, timeout: float = 30.0,
            headers: dict[str, str] | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        raise ClipperException(f"Cannot reach {url}: {e}") from None


def error_cause(text: str) -> str:
    """The message in an admin error (JSON ``{"error", "cause"}``; the cause is Clipper's), else ``text``."""
    try:
        return str(json.loads(text)["cause"])
    except (ValueError, KeyError, TypeError):
        return text


def check_admin_token(addr: str, token: str) -> None:
    """Raise :class:`AdminTokenError` if the admin API at ``addr`` refuses ``token`` (its ping checks one sent)."""
    status, text = request("GET", f"http://{addr}/admin/ping", timeout=10.0, headers={ADMIN_TOKEN_HEADER: token})
    if status == 403:
        raise AdminTokenError(f"The cluster's admin API at {addr} refuses this admin token: {error_cause(text)}")


def admin_post(addr: str, path: str, body: dict[str, Any], timeout: float = 30.0,
               token: str | None = None) -> Any:
    """POST to ``http://addr/admin/<path>``; Clipper's error text on a non-200 reply."""
    headers = {ADMIN_TOKEN_HEADER: token} if token else None
    status, text = request("POST", f"http://{addr}/admin/{path}", body, timeout, headers)
    if status != 200:
        raise ClipperException(f"Received error status code: {status} and message: {error_cause(text)}")
    try:
        return json.loads(text)
    except ValueError:
        return text
