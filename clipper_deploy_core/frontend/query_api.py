"""Clipper's query REST API: ``POST /<app>/predict`` and ``GET /metrics``."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson

from ..inputs import NUMPY_DTYPES, InputError, parse_single_input, validate_input
from ..wire import RawQuery
from .dispatch import Dispatcher, Outcome, Task
from .http import Handler, Request, Response, json_response
from .metrics import Metrics
from .state import ClusterState

NO_MODEL = "No connected models found for query"
SLO_MISSED = "Failed to retrieve a prediction response within the specified latency SLO"
SCHEMA_HINT = 'Expected JSON schema: {"input": <input>} or {"input_batch": [<input>, ...]}, optional "version"'


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
    return json_response({"error": error, "cause": cause}, status=status)


def parse_output(text: str) -> Any:
    """Clipper returns the model's string parsed as JSON when it is valid JSON."""
    try:
        return orjson.loads(text)
    except (ValueError, TypeError):
        return text


class QueryAPI:
    def __init__(self, state: ClusterState, dispatcher: Dispatcher, metrics: Metrics,
                 expected_replicas: Callable[[str, str], int]) -> None:
        self.state, self.dispatcher, self.metrics = state, dispatcher, metrics
        self.expected_replicas = expected_replicas
        self._qids = itertools.count()

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/metrics", self.metrics_handler), ("POST", r"/(?P<app>[^/]+)/predict/?", self.predict)]

    async def metrics_handler(self, request: Request) -> Response:
        return Response(200, self.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")

    async def predict(self, request: Request) -> Response:
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
                parse_single_input(app.input_type, body)
            except InputError as e:
                return json_error(400, "Json error", f"{e}. {SCHEMA_HINT}")
        metrics.latency.observe(time.monotonic() - started)
        return json_response(self._reply(app, outcome))

    async def _predict_parsed(self, app: Any, raw_body: bytes, started: float) -> Response:
        app_name = app.name
        try:
            body = orjson.loads(raw_body)
        except (ValueError, UnicodeDecodeError) as e:
            return json_error(400, "Json error", f"Error parsing JSON: {e}. {SCHEMA_HINT}")
        if not isinstance(body, dict) or ("input" in body) == ("input_batch" in body):
            return json_error(400, "Json error", "JSON object must have exactly one of the keys input or "
                                                 f"input_batch. {SCHEMA_HINT}")
        batch = "input_batch" in body
        raw = body["input_batch"] if batch else [body["input"]]
        if batch and (not isinstance(raw, list) or not raw):
            return json_error(400, "Json error", f"input_batch must be a non-empty JSON array. {SCHEMA_HINT}")
        bools = b"true" in raw_body or b"false" in raw_body  # else numpy checks types in one pass
        try:
            inputs = [validate_input(app.input_type, x, f"input_batch[{i}]" if batch else "input", bools)
                      for i, x in enumerate(raw)]
        except InputError as e:
            return json_error(400, "Json error", f"{e}. {SCHEMA_HINT}")
        wire_inputs = raw if app.input_type == "bytes" else inputs  # bytes travel base64-encoded
        metrics = self.metrics.app(app_name)
        metrics.requests.inc()
        metrics.predictions.inc(len(inputs))
        version = body.get("version")
        try:
            _, outcomes = await self.run(app, wire_inputs, None if version is None else str(version))
        except QueryRejected as e:
            return json_error(400, "Query processing error", e.cause)
        replies = [self._reply(app, o) for o in outcomes]
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

    async def run(self, app: Any, inputs: list[Any], version: str | None) -> tuple[str, list[Outcome]]:
        """Queue ``inputs`` (wire form) for the app's model and wait for them, at most the app's SLO."""
        served, model = self.resolve(app, version)
        if model is None:
            what = ("no model is linked to app" if not self.state.linked_models(app.name)
                    else "no version of the model for")
            return served, [Outcome(reason="no_model", explanation=f"{NO_MODEL}: {what} '{app.name}'")] * len(inputs)
        key = (model.name, model.version)
        if self.dispatcher.live_replicas(key) == 0 and self.expected_replicas(*key) == 0:
            return served, [Outcome(reason="no_replica", explanation=f"{NO_MODEL}: model {model.name}:{model.version} "
                                                                     f"has no live replica")] * len(inputs)
        slo = app.latency_slo_micros / 1e6
        deadline = time.monotonic() + slo
        queue = self.dispatcher.queue(key, model.batch_size)
        tasks = [Task(x, deadline, slo) for x in inputs]
        for t in tasks:
            queue.put(t)
        self.metrics.model(*key).requests.inc(len(tasks))
        # One timer per request answers whatever is still pending at the deadline with the SLO default.
        timer = asyncio.get_running_loop().call_at(_loop_time(deadline), _expire, tasks)
        try:
            if len(tasks) == 1:
                return served, [await tasks[0].future]
            return served, list(await asyncio.gather(*(t.future for t in tasks)))
        finally:
            timer.cancel()

    def count_default(self, app: Any, outcome: Outcome) -> None:
        self.metrics.defaults.labels(app.name, outcome.reason or "unknown").inc()

    def _reply(self, app: Any, outcome: Outcome) -> dict[str, Any]:
        qid = next(self._qids)
        if outcome.output is not None:
            return {"query_id": qid, "output": parse_output(outcome.output), "default": False}
        self.count_default(app, outcome)
        return {"query_id": qid, "output": parse_output(app.default_output), "default": True,
                "default_explanation": outcome.explanation}
