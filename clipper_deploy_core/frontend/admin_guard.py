"""Who may call the admin API, and the checks that stop a web page from calling it through a browser.

A mutation can start code (a bundle is pickles), so every mutation needs the cluster's admin token, from
every address, loopback included. Independently of the token, a request must name this API in ``Host``
(an IP address, ``localhost`` or a configured name: a DNS-rebinding page names its own domain), carry no
foreign ``Origin`` (CSRF), and POST ``application/json`` (which a page cannot send cross-origin without a
preflight this API never answers). ``insecure_loopback`` is the documented opt-in for Clipper's own
``clipper_admin``, which cannot send a token: token-less mutations from loopback only, every other check kept.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from .http import Request, Response, json_response

TOKEN_HEADER = "X-Clipper-Admin-Token"


def admin_error(status: int, message: str) -> Response:
    """Every error on the admin port is JSON with ``error`` and ``cause``."""
    title = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
             413: "Request too large", 415: "Unsupported media type"}.get(status, "Error")
    return json_response({"error": title, "cause": message}, status)


def _host_name(host: str) -> str | None:
    """The name or address in a ``Host`` value (port and IPv6 brackets removed), or ``None`` if malformed."""
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return None
    return name.lower() if name else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


class AdminGuard:
    """The admin port's checks: the token, Host, Origin and Content-Type (see the module)."""
    def __init__(self, token: str | None, insecure_loopback: bool = False, allowed_hosts: Iterable[str] = ()) -> None:
        self.token, self.insecure_loopback = token, insecure_loopback
        self.allowed_hosts = {"localhost", *(h.strip().lower() for h in allowed_hosts if h.strip())}

    def authorized(self, request: Request) -> bool:
        """Whether ``request`` may mutate: the token, or loopback under the insecure opt-in."""
        given = request.headers.get(TOKEN_HEADER.lower(), "")
        if self.token and given and hmac.compare_digest(given.encode(), self.token.encode()):
            return True
        return self.insecure_loopback and _is_loopback(request.client)

    def refuse(self, request: Request, mutating: bool) -> Response | None:
        """The error to answer ``request`` with, or ``None`` when it may go on."""
        host = request.headers.get("host", "")
        name = _host_name(host)
        if name is None:
            return admin_error(400, "The request has no valid Host header")
        if not _is_ip(name) and name not in self.allowed_hosts:
            return admin_error(403, f"Host {host!r} does not name this admin API (requests through other names are "
                                    f"refused, against DNS rebinding); use its IP address or localhost, or allow "
                                    f"the name with --admin-allowed-hosts")
        origin = request.headers.get("origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
            return admin_error(403, f"Cross-origin requests are refused (Origin {origin!r}, Host {host!r})")
        if request.method == "POST":
            ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                return admin_error(415, f"Admin requests must be Content-Type: application/json, "
                                        f"got {ctype or 'none'!r}")
        if mutating and not self.authorized(request):
            return admin_error(403, f"Mutating admin requests need the cluster's admin token in the {TOKEN_HEADER} "
                                    f"header (ClipperConnection, connect() and the CLI read it from the cluster's "
                                    f"directory)")
        return None
