"""How a replica proves it holds the cluster's secret before a frontend links it (and the frontend proves it back).

A bundle is code and its queries are users' data, so the RPC port links only replicas that know the
cluster's secret. Mutual HMAC-SHA256 challenge-response over the existing frames (stdlib ``hmac`` and
``secrets``); the secret itself never travels::

    frontend -> replica   {"type": "challenge", "nonce": F}
    replica  -> frontend  {"type": "hello", model, version, replica_id, pid, "nonce": R, "mac": M}
    frontend -> replica   {"type": "welcome", "mac": W}  or  {"type": "refused", "reason": ...}

``M = HMAC(secret, "replica" F R <hello's fields>)`` binds the proof to this connection's challenge and to
what the replica claims to be; ``W = HMAC(secret, "frontend" F R)`` shows the replica that it reached the
real frontend. The secret reaches replicas through each manager's own channel (``SECRET_ENV``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

SECRET_ENV = "CLIPPER_CLUSTER_SECRET"
# Until a peer has proven itself, frames are capped small and the handshake must end within this time.
PRE_AUTH_MAX_FRAME = 64 * 1024
AUTH_TIMEOUT_S = float(os.environ.get("CLIPPER_DEPLOY_AUTH_TIMEOUT", "5"))
HELLO_FIELDS = ("model", "version", "replica_id", "pid")


class AuthError(ConnectionError):
    """The peer did not prove that it holds the cluster's secret, or was refused."""


def new_secret() -> str:
    return secrets.token_hex(32)


def load_or_create_secret(path: Path) -> str:
    """The secret kept at ``path`` (mode 0600), made on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def challenge() -> dict[str, Any]:
    return {"type": "challenge", "nonce": secrets.token_hex(16)}


def _mac(secret: str, *parts: object) -> str:
    msg = "\x1f".join(str(p) for p in parts).encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def sign_hello(secret: str, challenge_msg: dict[str, Any], hello: dict[str, Any]) -> dict[str, Any]:
    """The replica's side: ``hello`` with a fresh nonce and its proof for ``challenge_msg``."""
    if challenge_msg.get("type") != "challenge" or not isinstance(challenge_msg.get("nonce"), str):
        raise AuthError(f"expected a challenge from the frontend, got {challenge_msg.get('type')!r}")
    nonce = secrets.token_hex(16)
    mac = _mac(secret, "replica", challenge_msg["nonce"], nonce, *(hello.get(f) for f in HELLO_FIELDS))
    return {**hello, "nonce": nonce, "mac": mac}


def check_hello(secret: str, challenge_msg: dict[str, Any], hello: dict[str, Any]) -> None:
    """The frontend's side: raise ``AuthError`` unless ``hello`` proves the secret for this challenge."""
    if hello.get("type") != "hello":
        raise AuthError(f"expected a hello, got {hello.get('type')!r}")
    nonce, mac = hello.get("nonce"), hello.get("mac")
    if not isinstance(nonce, str) or not isinstance(mac, str):
        raise AuthError("the hello carries no proof of the cluster's secret")
    expected = _mac(secret, "replica", challenge_msg["nonce"], nonce, *(hello.get(f) for f in HELLO_FIELDS))
    if not hmac.compare_digest(mac, expected):
        raise AuthError("the hello's proof does not match the cluster's secret")


def welcome(secret: str, challenge_msg: dict[str, Any], hello: dict[str, Any]) -> dict[str, Any]:
    return {"type": "welcome", "mac": _mac(secret, "frontend", challenge_msg["nonce"], hello["nonce"])}


def check_welcome(secret: str, challenge_msg: dict[str, Any], hello: dict[str, Any], reply: dict[str, Any]) -> None:
    """The replica's side: the frontend linked us and proved that it holds the secret too."""
    if reply.get("type") == "refused":
        raise AuthError(f"the frontend refused this replica: {reply.get('reason')}")
    mac = reply.get("mac")
    expected = _mac(secret, "frontend", challenge_msg["nonce"], hello["nonce"])
    if reply.get("type") != "welcome" or not isinstance(mac, str) or not hmac.compare_digest(mac, expected):
        raise AuthError("the frontend did not prove that it holds the cluster's secret")
