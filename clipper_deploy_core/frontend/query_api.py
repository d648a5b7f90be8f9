"""Clipper's query REST API: ``POST /<app>/predict`` and ``GET /metrics``."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson

from ..inputs import NUMPY_DTYPES, InputError
from ..selection.policy import PolicyError, SelectionPolicy
from ..selection.registry import policy_class
from ..wire import RawQuery
from . import warm_imports
from .dispatch import Dispatcher, Outcome, Task
from .http import Handler, Request, Response, json_response
from .metrics import Metrics
from .offload import Offload
from .prediction_cache import input_key
from .rest_body import SCHEMA_HINT, BodyError, check_single, parse_rest
from .state import ClusterState

NO_MODEL = "No connected models found for query"
SLO_MISSED = "Failed to retrieve a prediction response within the specified latency SLO"
DEFAULT_MAX_BATCH_ROWS = 10_000
# Rows queued per turn of the event loop: a large batch lets other queries in between its chunks.
ENQUEUE_CHUNK = 512


def _loop_time(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


def _expire(tasks: list[Task]) -> None:
    for t in tasks:
        if not t.future.done():
            t.future.set_result(Outcome(reason="slo", explanation=SLO_MISSED))


class QueryRejected(Exception):
    """A query that cannot be routed (for instance an unknown version)."""

    def __init__(self, cause: str, unknown_version: bool = False) -> None:
        super().__init__(cause)
        self.cause, self.unknown_version = cause, unknown_version


def json_error(status: int, error: str, cause: str) -> Response:
    """A JSON error response with ``error`` and ``cause``."""
    return json_response({"error": error, "cause": cause}, status=status)


def query_error(status: int, message: str) -> Response:
    """Every HTTP error on the query port is JSON with ``error`` and ``cause``."""
    title = {404: "Not found", 405: "Method not allowed", 413: "Request too large"}.get(status, "Error")
    hint = "" if status == 413 else ". Queries go to POST /<app>/predict or /v2/models/<app>/infer"
    return json_response({"error": title, "cause": message + hint}, status)


def parse_output(text: str) -> Any:
    """Clipper returns the model's string parsed as JSON when it is valid JSON."""
    try:
        return orjson.loads(text)
    except (ValueError, TypeError):
        return text


class QueryAPI:
    """Clipper's query REST API on the query port: parse, queue, wait at most the SLO, answer."""
    def __init__(self, state: ClusterState, dispatcher: Dispatcher, metrics: Metrics,
                 expected_replicas: Callable[[str, str], int], max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
                 offload: Offload | None = None, failure: Callable[[str, str], str | None] | None = None) -> None:
        self.state, self.dispatcher, self.metrics = state, dispatcher, metrics
        self.cache = dispatcher.cache if dispatcher.cache is not None and dispatcher.cache.enabled else None
        self.expected_replicas = expected_replicas
        self.failure = failure or (lambda name, version: None)
        self.max_batch_rows = max_batch_rows
        self.offload = offload or Offload()
        self._qids = itertools.count()
        self._policies: dict[str, tuple[tuple[str, str, str, tuple[str, ...]], SelectionPolicy]] = {}

    def routes(self) -> list[tuple[str, str, Handler]]:
        """``GET /metrics`` and ``POST /<app>/predict``."""
        return [("GET", "/metrics", self.metrics_handler), ("POST", r"/(?P<app>[^/]+)/predict/?", self.predict)]

    async def metrics_handler(self, request: Request) -> Response:
        """``GET /metrics``: the Prometheus text."""
        return Response(200, self.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")

    async def predict(self, request: Request) -> Response:
        """``POST /<app>/predict``: one input or a batch, answered within the app's SLO."""
        started = time.monotonic()
        app_name = request.params["app"]
        app = self.state.get_app(app_name)
        if app is None:
            return json_error(404, "Unknown application", f"No application named '{app_name}' is registered")
        if app.input_type in NUMPY_DTYPES and request.body.count(b'"') == 2 and \
                request.body.lstrip().startswith(b'{"input"'):
            return await self._predict_unparsed(app, request.body, started)
        return await self._predict_parsed(app, request.body, started)

    async def _predict_unparsed(self, app: Any, body: bytes, started: float) -> Response:
        """``{"input": [numbers]}`` and nothing else (two quotes in the whole body): the replica parses
        and validates it, which takes that work off the frontend's single core."""
        metrics = self.metrics.app(app.name)
        metrics.requests.inc()
        metrics.predictions.inc()
        _, outcomes = await self.run(app, [RawQuery(body)], None)
        outcome = outcomes[0]
        if outcome.reason == "invalid_input":
            return json_error(400, "Json error", f"{outcome.explanation}. {SCHEMA_HINT}")
        if outcome.output is None:  # never reached a replica: a malformed body still gets its 400
            try:
                await self.offload.parse(check_single, body, app.input_type)
            except InputError as e:
                return json_error(400, "Json error", f"{e}. {SCHEMA_HINT}")
            except BodyError as e:
                return json_error(e.status, e.error, e.cause)
        metrics.latency.observe(time.monotonic() - started)
        return json_response(self._reply(app, outcome))

    async def _predict_parsed(self, app: Any, raw_body: bytes, started: float) -> Response:
        try:
            parsed = await self.offload.parse(parse_rest, raw_body, app.input_type, self.max_batch_rows)
        except BodyError as e:
            return json_error(e.status, e.error, e.cause)
        n = len(parsed.inputs)
        metrics = self.metrics.app(app.name)
        metrics.requests.inc()
        metrics.predictions.inc(n)
        try:
            _, outcomes = await self.run(app, parsed.inputs, parsed.version, parsed.uid)
        except QueryRejected as e:
            return json_error(400, "Query processing error", e.cause)
        replies = []
        for start in range(0, n, ENQUEUE_CHUNK):
            if start:
                await asyncio.sleep(0)
            replies += [self._reply(app, o) for o in outcomes[start:start + ENQUEUE_CHUNK]]
        metrics.latency.observe(time.monotonic() - started)
        if len(replies) == 1:
            return json_response(replies[0])
        return json_response({"batch_predictions": replies})

    def resolve(self, app: Any, version: str | None) -> tuple[str, Any]:
        """The model version serving ``app`` (``version`` or the current one): ``(version, Model | None)``."""
        linked = self.state.linked_models(app.name)
        if not linked:
            if version is not None:
                raise QueryRejected(f"No model is linked to application '{app.name}'", unknown_version=True)
            return "", None
        model_name = linked[0]
        if version is None:
            model = self.state.current_model(model_name)
            return (model.version if model else ""), model
        model = self.state.get_model(model_name, version)
        if model is None:
            raise QueryRejected(f"Requested version: {version} does not exist for model: {model_name}",
                                unknown_version=True)
        return version, model

    def policy(self, app: Any, linked: list[str]) -> SelectionPolicy:
        """The app's selection policy object, rebuilt only when its name, parameters, saved state (another frontend
        learned, on Kubernetes) or links change."""
        row = self.state.policy_row(app.name)
        key = (*row, tuple(linked))
        cached = self._policies.get(app.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        name, params, saved = row[0], orjson.loads(row[1]), orjson.loads(row[2])
        policy = policy_class(name)(linked, params, saved or None)
        self._policies[app.name] = (key, policy)
        return policy

    async def run(self, app: Any, inputs: Any, version: str | None, uid: str | None = None
                  ) -> tuple[str, list[Outcome]]:
        """Queue ``inputs`` (wire form: a list, or a 2-D array of rows) for the model(s) the app's selection policy
        chooses and wait for them, at most the app's SLO. A pinned ``version`` is the first linked model's."""
        if version is not None or self.state.policy_row(app.name)[0] == "default":
            served, model = self.resolve(app, version)
            return served, await self.run_model(app, model, inputs)
        try:
            policy = self.policy(app, self.state.linked_models(app.name))
        except PolicyError as e:
            return "", [Outcome(reason="no_model", explanation=f"{NO_MODEL}: the selection policy of '{app.name}' "
                                                                 f"cannot run: {e}")] * len(inputs)
        chosen = [policy.select(uid) for _ in range(len(inputs))]
        groups: dict[str, list[int]] = {}
        for i, names in enumerate(chosen):
            for name in names:
                groups.setdefault(name, []).append(i)
        models = {name: self.state.current_model(name) for name in groups}
        runs = await asyncio.gather(*(self.run_model(app, models[name], [inputs[i] for i in idx])
                                      for name, idx in groups.items()))
        per_input: list[dict[str, Outcome]] = [{} for _ in range(len(inputs))]
        for (name, idx), outcomes in zip(groups.items(), runs, strict=True):
            model = models[name]
            label = f"{name}:{model.version}" if model is not None else name
            self.metrics.app_model(app.name, label).inc(len(idx))
            for i, o in zip(idx, outcomes, strict=True):
                per_input[i][name] = dataclasses.replace(o, model=label)
        result = []
        for names, got in zip(chosen, per_input, strict=True):
            if len(names) == 1:
                result.append(got[names[0]])
                continue
            answered = {n: o.output for n, o in got.items() if o.output is not None}
            combined = policy.combine(answered) if answered else None
            if combined is None:  # nothing arrived (or the policy declined): the default, with the first reason
                result.append(next(o for o in got.values() if o.output is None) if len(answered) < len(got)
                              else Outcome(reason="no_model", explanation=f"{NO_MODEL}: the selection policy "
                                                                          f"combined no answer"))
                continue
            missing = [f"{o.model} ({o.reason})" for o in got.values() if o.output is None]
            result.append(Outcome(output=combined, model="+".join(got[n].model or n for n in names if n in answered),
                                  explanation=f"combined {len(answered)} of {len(names)} models; no answer in time "
                                              f"from {', '.join(missing)}" if missing else None))
        first = models[next(iter(groups))] if groups else None
        return (first.version if first is not None else ""), result

    async def run_model(self, app: Any, model: Any, inputs: Any) -> list[Outcome]:
        """Queue ``inputs`` for one model version (``None``: none to serve them) and wait, at most the app's SLO."""
        if model is None:
            what = ("no model is linked to app" if not self.state.linked_models(app.name)
                    else "no version of the model for")
            return [Outcome(reason="no_model", explanation=f"{NO_MODEL}: {what} '{app.name}'")] * len(inputs)
        key = (model.name, model.version)
        if self.dispatcher.live_replicas(key) == 0:
            failing = self.failure(*key)
            if failing or self.expected_replicas(*key) == 0:
                why = f"no live replica: model {model.name}:{model.version} " + (
                    f"fails to start: {failing}" if failing else "has no live replica")
                return [Outcome(reason="no_replica", explanation=f"{NO_MODEL}: {why}")] * len(inputs)
        slo = app.latency_slo_micros / 1e6
        deadline = time.monotonic() + slo
        queue = self.dispatcher.queue(key, model.batch_size)
        n = len(inputs)
        outcomes: list[Outcome | Task] = []
        tasks: list[Task] = []
        cache, hits = self.cache, 0
        for start in range(0, n, ENQUEUE_CHUNK):
            if start:
                await asyncio.sleep(0)  # let other queries in between the chunks of a large batch
            for i in range(start, min(n, start + ENQUEUE_CHUNK)):
                cache_key = None
                if cache is not None:
                    raw = input_key(inputs[i])
                    if raw is not None:
                        cache_key = (model.name, model.version, raw)
                        cached = cache.get(cache_key)
                        if cached is not None:
                            hits += 1
                            outcomes.append(Outcome(output=cached))
                            continue
                t = Task(inputs[i], deadline, slo, cache_key=cache_key)
                queue.put(t)
                tasks.append(t)
                outcomes.append(t)
        model_metrics = self.metrics.model(*key)
        if cache is not None:
            model_metrics.cache_lookups.inc(n)
            model_metrics.cache_hits.inc(hits)
        model_metrics.requests.inc(len(tasks))
        if not tasks:
            return [o for o in outcomes if isinstance(o, Outcome)]  # every one answered from the cache
        # One timer per request answers whatever is still pending at the deadline with the SLO default.
        timer = asyncio.get_running_loop().call_at(_loop_time(deadline), _expire, tasks)
        try:
            return [await o.future if isinstance(o, Task) else o for o in outcomes]
        finally:
            timer.cancel()

    def count_default(self, app: Any, outcome: Outcome) -> None:
        """Count a default answer under its reason (``/metrics``)."""
        self.metrics.defaults.labels(app.name, outcome.reason or "unknown").inc()

    def _reply(self, app: Any, outcome: Outcome) -> dict[str, Any]:
        qid = next(self._qids)
        if outcome.output is not None:
            warm_imports.start_arrays()  # once a replica has answered: off a cold start's path
            reply = {"query_id": qid, "output": parse_output(outcome.output), "default": False}
        else:
            self.count_default(app, outcome)
            reply = {"query_id": qid, "output": parse_output(app.default_output), "default": True,
                     "default_explanation": outcome.explanation}
        if outcome.model is not None:
            reply["model"] = outcome.model
            if outcome.output is not None and outcome.explanation:
                reply["partial_explanation"] = outcome.explanation  # an ensemble answered without some models
        return reply
