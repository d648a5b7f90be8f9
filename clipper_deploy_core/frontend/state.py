"""Cluster state in SQLite: apps, models and versions, links, and replica deployments.

Messages follow Clipper's management frontend, so code written against Clipper sees the same errors.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from ..exceptions import ClipperException
from ..inputs import canonical_input_type
from ..naming import validate_name, validate_version

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (name TEXT PRIMARY KEY, input_type TEXT NOT NULL, default_output TEXT NOT NULL,
                                 latency_slo_micros INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS links (app_name TEXT NOT NULL, model_name TEXT NOT NULL, seq INTEGER NOT NULL,
                                  PRIMARY KEY (app_name, model_name));
CREATE TABLE IF NOT EXISTS policies (app_name TEXT PRIMARY KEY, name TEXT NOT NULL, params TEXT NOT NULL,
                                     state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (name TEXT NOT NULL, version TEXT NOT NULL, input_type TEXT NOT NULL,
                                   labels TEXT NOT NULL, container_name TEXT NOT NULL, model_data_path TEXT NOT NULL,
                                   batch_size INTEGER NOT NULL, is_current INTEGER NOT NULL DEFAULT 0,
                                   seq INTEGER NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS deployments (name TEXT NOT NULL, version TEXT NOT NULL, bundle_dir TEXT NOT NULL,
                                        digest TEXT NOT NULL, num_replicas INTEGER NOT NULL, pkgs TEXT NOT NULL,
                                        image TEXT NOT NULL DEFAULT '', PRIMARY KEY (name, version));
"""
CONTAINERLESS = "NO_CONTAINER"
TABLES = ("apps", "links", "models", "deployments", "policies")


@dataclass(frozen=True)
class App:
    name: str
    input_type: str
    default_output: str
    latency_slo_micros: int


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    input_type: str
    labels: list[str]
    container_name: str
    model_data_path: str
    batch_size: int
    is_current: bool

    def as_dict(self) -> dict[str, Any]:
        """The model as Clipper's ``get_model_info`` reports it."""
        return {"model_name": self.name, "model_version": self.version, "input_type": self.input_type,
                "labels": self.labels, "container_name": self.container_name,
                "model_data_path": self.model_data_path, "batch_size": self.batch_size,
                "is_current_version": self.is_current}


@dataclass(frozen=True)
class Deployment:
    """What the supervisor keeps running for a model version: replicas of a ``bundle`` in the cluster's store (local
    processes) or of a model ``image`` (containers), exactly one of the two, pinned by the bundle's ``digest``."""

    name: str
    version: str
    digest: str
    num_replicas: int
    pkgs: list[str]
    bundle: str | None = None
    image: str | None = None

    def __post_init__(self) -> None:
        if (self.bundle is None) == (self.image is None):
            raise ClipperException("a deployment runs either a bundle or an image: give exactly one")


_T = TypeVar("_T")


def _rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return rows


def _first_app(rows: list[tuple[Any, ...]]) -> App | None:
    return App(*rows[0]) if rows else None


def _names(rows: list[tuple[Any, ...]]) -> tuple[str, ...]:
    return tuple(r[0] for r in rows)  # a tuple: callers get a list of their own


def _policy_row(rows: list[tuple[Any, ...]]) -> tuple[str, str, str]:
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else ("default", "{}", "{}")


def _model(row: tuple[Any, ...]) -> Model:
    name, version, itype, labels, cname, path, bs, cur, _ = row
    return Model(name, version, itype, json.loads(labels), cname, path, bs, bool(cur))


def _first_model(rows: list[tuple[Any, ...]]) -> Model | None:
    return _model(rows[0]) if rows else None


class ClusterState:
    """Thread-safe SQLite-backed state; every write commits before it returns."""

    def __init__(self, path: Path, shared: bool = False) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=10000")  # another frontend process may be writing
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._lock = threading.RLock()
        # Reads are served from memory and the whole cache dropped on any write: the query path then never
        # touches SQLite. With ``shared`` (several frontend processes on one database), a read first asks
        # SQLite whether another connection committed since (``PRAGMA data_version``: a counter, no disk read),
        # once per turn of the event loop (see _check_others).
        self._reads: dict[tuple[Any, ...], Any] = {}  # (sql, args, decode) -> decode(rows)
        self._shared = shared
        self._seen_version = self._data_version()
        # the loop whose current turn has checked (one stopped before its next turn runs _turn_over when it resumes)
        self._checked_in: asyncio.AbstractEventLoop | None = None

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _check_others(self) -> None:
        """Drop the cache if another process committed since the last check: at every read, but on an event loop's
        thread once per turn (a query reads 4 times or more: 30 µs). The check queues ``_turn_over`` behind every
        callback queued so far, so a task step that skips it was queued before it, for a request received before
        it: a write acknowledged to that request's client committed before the check. Requests read only in task
        steps (the HTTP server runs each in a task), never in a transport's or a timer's callback."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and loop is self._checked_in:
            return
        version = self._data_version()
        if version != self._seen_version:
            self._seen_version = version
            self._reads.clear()
        if loop is not None:
            self._checked_in = loop
            loop.call_soon(self._turn_over)

    def _turn_over(self) -> None:
        """First thing in the loop's next turn: its reads check again."""
        self._checked_in = None

    def _migrate(self) -> None:
        """State written before images had a column of their own kept a model image's tag in ``bundle_dir``; state
        written before apps could link several models kept one link per app, without an order."""
        if "seq" not in [r[1] for r in self._db.execute("PRAGMA table_info(links)")]:
            self._db.executescript("""
                BEGIN;
                ALTER TABLE links RENAME TO links_one_per_app;
                CREATE TABLE links (app_name TEXT NOT NULL, model_name TEXT NOT NULL, seq INTEGER NOT NULL,
                                    PRIMARY KEY (app_name, model_name));
                INSERT INTO links SELECT app_name, model_name, rowid FROM links_one_per_app;
                DROP TABLE links_one_per_app;
                COMMIT;""")
        columns = [r[1] for r in self._db.execute("PRAGMA table_info(deployments)")]
        if "image" not in columns:
            self._db.execute("ALTER TABLE deployments ADD COLUMN image TEXT NOT NULL DEFAULT ''")
            self._db.execute("UPDATE deployments SET image=bundle_dir, bundle_dir='' WHERE bundle_dir NOT LIKE '/%'")

    def _q(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run ``sql``: a SELECT's rows (see :meth:`_read`); any other statement writes, and forgets every read."""
        if sql.startswith("SELECT"):
            return self._read(_rows, sql, *args)
        with self._lock:
            self._reads.clear()
            return self._db.execute(sql, args).fetchall()

    def _read(self, decode: Callable[[list[tuple[Any, ...]]], _T], sql: str, *args: Any) -> _T:
        """``decode(rows)`` of the SELECT ``sql``, kept until the next write: the query path reads memory, and
        decoding a model's row (its labels' JSON, a frozen dataclass) cost more than the lookup."""
        with self._lock:
            if self._shared:
                self._check_others()
            key = (sql, args, decode)
            try:
                return cast(_T, self._reads[key])
            except KeyError:
                value = self._reads[key] = decode(self._db.execute(sql, args).fetchall())
                return value

    async def transaction(self, mutation: Callable[[], Awaitable[Any]]) -> Any:
        """Run a read-modify-write (which must not wait on anything but this state) with no other frontend
        process writing in between: SQLite's ``BEGIN IMMEDIATE`` takes the database's write lock first."""
        with self._lock:
            self._reads.clear()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = await mutation()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._reads.clear()
            self._db.execute("COMMIT")
            return result

    # --- the whole state, for stores shared by several frontends ------------------------------
    def snapshot(self) -> dict[str, list[list[Any]]]:
        """Every row of every table, JSON-serializable."""
        with self._lock:
            return {t: [list(r) for r in self._db.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in TABLES}

    def restore(self, snapshot: dict[str, list[list[Any]]]) -> None:
        """Replace the whole state with ``snapshot`` (one transaction: readers see the old or the new)."""
        unknown = set(snapshot) - set(TABLES)
        if unknown:
            raise ClipperException(f"Unknown tables in a state snapshot: {sorted(unknown)}")
        with self._lock:
            self._reads.clear()
            self._db.execute("BEGIN")
            try:
                for t in TABLES:
                    self._db.execute(f"DELETE FROM {t}")
                    for i, row in enumerate(snapshot.get(t, [])):
                        if t == "links" and len(row) == 2:  # written by a frontend from before ordered links
                            row = [*row, i]
                        self._db.execute(f"INSERT INTO {t} VALUES ({','.join('?' * len(row))})", row)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- apps -------------------------------------------------------------------------------
    def add_app(self, name: str, input_type: str, default_output: str, slo: int) -> None:
        """Register an application (Clipper's checks and messages)."""
        validate_name(name, "application name")
        input_type = canonical_input_type(input_type)
        if not isinstance(default_output, str):
            raise ClipperException(f"default_output must be a string, got {type(default_output).__name__}")
        if not isinstance(slo, int) or isinstance(slo, bool) or not 0 < slo < 2**31:
            raise ClipperException(f"latency_slo_micros must be a positive 32-bit integer, got {slo!r}")
        with self._lock:
            if self.get_app(name) is not None:
                raise ClipperException(f"application '{name}' already exists")
            self._q("INSERT INTO apps VALUES (?,?,?,?)", name, input_type, default_output, slo)

    def delete_app(self, name: str) -> None:
        """Unregister an application and its links."""
        with self._lock:
            if self.get_app(name) is None:
                raise ClipperException(f"Application '{name}' does not exist")
            self._q("DELETE FROM apps WHERE name=?", name)
            self._q("DELETE FROM links WHERE app_name=?", name)
            self._q("DELETE FROM policies WHERE app_name=?", name)

    def get_app(self, name: str) -> App | None:
        """The application called ``name``, or ``None``."""
        return self._read(_first_app, "SELECT * FROM apps WHERE name=?", name)

    def apps(self) -> list[App]:
        """Every application, by name."""
        return [App(*r) for r in self._q("SELECT * FROM apps ORDER BY name")]

    def app_dict(self, app: App) -> dict[str, Any]:
        """An application as Clipper's ``get_app_info`` reports it."""
        name, params, _ = self.policy(app.name)
        return {"name": app.name, "input_type": app.input_type, "default_output": app.default_output,
                "latency_slo_micros": app.latency_slo_micros, "linked_models": self.linked_models(app.name),
                "selection_policy": {"name": name, "params": params}}

    # --- links ------------------------------------------------------------------------------
    def linked_models(self, app_name: str) -> list[str]:
        """The names of the models linked to ``app_name``, in the order they were linked."""
        return list(self._read(_names, "SELECT model_name FROM links WHERE app_name=? ORDER BY seq", app_name))

    def add_link(self, app_name: str, model_names: list[str]) -> None:
        """Link models to an application (each existing, with the app's input type, and not linked yet). The first
        model linked answers the app's queries until a selection policy says otherwise."""
        with self._lock:
            app = self.get_app(app_name)
            if app is None:
                raise ClipperException(f"No app with name '{app_name}' exists.")
            if not isinstance(model_names, list) or not model_names:
                raise ClipperException("model_names must name at least one model")
            linked = self.linked_models(app_name)
            for model in model_names:
                current = self.current_model(model)
                if current is None:
                    raise ClipperException(f"No model with name '{model}' exists.")
                if current.input_type != app.input_type:
                    raise ClipperException(f"Model with name '{model}' has incompatible input_type "
                                           f"{current.input_type}. Requested input_type: {app.input_type}")
                if model in linked or model_names.count(model) > 1:
                    raise ClipperException(f"The model with name '{model}' is already linked to '{app_name}'")
            seq = (self._q("SELECT COALESCE(MAX(seq), 0) FROM links")[0][0] or 0) + 1
            for i, model in enumerate(model_names):
                self._q("INSERT INTO links VALUES (?,?,?)", app_name, model, seq + i)

    def delete_link(self, app_name: str, model_names: list[str]) -> None:
        """Unlink models from an application."""
        with self._lock:
            if self.get_app(app_name) is None:
                raise ClipperException(f"No app with name '{app_name}' exists.")
            for model in model_names:
                if model not in self.linked_models(app_name):
                    raise ClipperException(f"Cannot remove nonexistent link between app {app_name} and model {model}")
                self._q("DELETE FROM links WHERE app_name=? AND model_name=?", app_name, model)

    # --- selection policies -------------------------------------------------------------------
    def policy_row(self, app_name: str) -> tuple[str, str, str]:
        """The app's selection policy as stored: ``(name, params JSON, state JSON)``, read from memory."""
        return self._read(_policy_row, "SELECT name, params, state FROM policies WHERE app_name=?", app_name)

    def policy(self, app_name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """The app's selection policy: ``(name, params, saved state)``; ``("default", {}, {})`` if none was set."""
        name, params, state = self.policy_row(app_name)
        return name, json.loads(params), json.loads(state)

    def set_policy(self, app_name: str, name: str, params: dict[str, Any]) -> None:
        """Give the app a selection policy (checked by the caller), with nothing learned yet."""
        with self._lock:
            if self.get_app(app_name) is None:
                raise ClipperException(f"No app with name '{app_name}' exists.")
            self._q("INSERT OR REPLACE INTO policies VALUES (?,?,?,?)", app_name, name, json.dumps(params), "{}")

    def save_policy_state(self, app_name: str, state: dict[str, Any]) -> None:
        """Keep what the app's policy has learned (it survives a restart)."""
        self._q("UPDATE policies SET state=? WHERE app_name=?", json.dumps(state), app_name)

    # --- models -----------------------------------------------------------------------------
    def add_model(self, name: str, version: str, input_type: str, labels: list[str], container_name: str,
                  model_data_path: str, batch_size: int) -> None:
        """Register a model version; it becomes the current version of its name."""
        validate_name(name)
        version = validate_version(version)
        input_type = canonical_input_type(input_type)
        if not isinstance(batch_size, int) or not (batch_size == -1 or batch_size > 0):
            raise ClipperException(f"batch_size must be a positive integer or -1, got {batch_size!r}")
        if not isinstance(labels, list) or any(not isinstance(lb, str) or "," in lb or ":" in lb for lb in labels):
            raise ClipperException("labels must be a list of strings without ',' or ':'")
        with self._lock:
            if self.get_model(name, version) is not None:
                raise ClipperException(f"model with name '{name}' and version '{version}' already exists")
            for app in self.apps():
                if name in self.linked_models(app.name) and app.input_type != input_type:
                    raise ClipperException(f"Model {name}:{version} has input_type {input_type} but is linked to "
                                           f"app '{app.name}' with input_type {app.input_type}")
            seq = (self._q("SELECT COALESCE(MAX(seq), 0) FROM models")[0][0] or 0) + 1
            self._q("UPDATE models SET is_current=0 WHERE name=?", name)
            self._q("INSERT INTO models VALUES (?,?,?,?,?,?,?,1,?)", name, version, input_type, json.dumps(labels),
                    container_name, model_data_path, batch_size, seq)

    def get_model(self, name: str, version: str) -> Model | None:
        """The model version ``name:version``, or ``None``."""
        return self._read(_first_model, "SELECT * FROM models WHERE name=? AND version=?", name, str(version))

    def current_model(self, name: str) -> Model | None:
        """The current version of model ``name``, or ``None``."""
        return self._read(_first_model, "SELECT * FROM models WHERE name=? AND is_current=1", name)

    def models(self, name: str | None = None) -> list[Model]:
        """Every model version (of ``name``, when given), oldest first."""
        if name is None:
            return [_model(r) for r in self._q("SELECT * FROM models ORDER BY seq")]
        return [_model(r) for r in self._q("SELECT * FROM models WHERE name=? ORDER BY seq", name)]

    def set_model_version(self, name: str, version: str) -> None:
        """Make ``version`` the current version of model ``name`` (a rollout or a rollback)."""
        with self._lock:
            if not self.models(name):
                raise ClipperException(f"Cannot set version for nonexistent model '{name}'")
            if self.get_model(name, version) is None:
                raise ClipperException(f"Cannot set non-existent version '{version}' for model with name '{name}'")
            self._q("UPDATE models SET is_current=(version=?) WHERE name=?", str(version), name)

    def delete_model(self, name: str, version: str) -> None:
        """Forget a model version and its deployment; the newest remaining version becomes current."""
        with self._lock:
            model = self.get_model(name, version)
            if model is None:
                raise ClipperException(f"model {name}:{version} does not exist")
            self._q("DELETE FROM models WHERE name=? AND version=?", name, version)
            self._q("DELETE FROM deployments WHERE name=? AND version=?", name, version)
            if model.is_current:  # fall back to the newest remaining version, so linked apps keep a route
                rest = self.models(name)
                if rest:
                    self._q("UPDATE models SET is_current=1 WHERE name=? AND version=?", name, rest[-1].version)

    # --- deployments (what the local manager keeps running) ---------------------------------
    def put_deployment(self, d: Deployment) -> None:
        """Record (or replace) what the supervisor keeps running for a version."""
        self._q("INSERT OR REPLACE INTO deployments (name, version, bundle_dir, digest, num_replicas, pkgs, image) "
                "VALUES (?,?,?,?,?,?,?)", d.name, d.version, d.bundle or "", d.digest, d.num_replicas,
                json.dumps(d.pkgs), d.image or "")

    def deployments(self) -> list[Deployment]:
        """Every recorded deployment."""
        return [Deployment(n, v, dg, nr, json.loads(p), bundle=b or None, image=i or None) for n, v, b, dg, nr, p, i in
                self._q("SELECT name, version, bundle_dir, digest, num_replicas, pkgs, image FROM deployments")]

    def get_deployment(self, name: str, version: str) -> Deployment | None:
        """The deployment of ``name:version``, or ``None``."""
        return next((d for d in self.deployments() if (d.name, d.version) == (name, version)), None)

    def delete_deployment(self, name: str, version: str) -> None:
        """Forget the deployment of ``name:version``."""
        self._q("DELETE FROM deployments WHERE name=? AND version=?", name, version)
