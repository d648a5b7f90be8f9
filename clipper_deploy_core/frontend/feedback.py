"""``POST /<app>/update``: Clipper's feedback endpoint, which Clipper accepted and ignored.

The body is Clipper's ``{"uid": ..., "input": ..., "label": ...}``; the input is validated as a query's is. As in the
paper, feedback is judged on every linked model: each one's output for the input comes from the prediction cache
when it is there, otherwise from the model itself, within the app's SLO. A model agrees when its output matches the
label (as numbers when both are numbers, else as text). The app's selection policy learns from it and its state is
saved; the reply is Clipper's ``Feedback received? true``, and says so when the policy learns nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ..selection.builtins import matches
from ..selection.policy import PolicyError
from ..wire import RawQuery
from .admin_api import Transaction
from .http import Handler, Request, Response, text_response
from .prediction_cache import input_key
from .query_api import QueryAPI, json_error
from .rest_body import BodyError, parse_rest

FEEDBACK_HINT = 'Expected JSON schema: {"input": <input>, "label": <number or string>}, optional "uid"'


class FeedbackAPI:
    """The feedback route, on the query API's state, cache, queues and policies."""

    def __init__(self, queries: QueryAPI, transaction: Transaction | None = None) -> None:
        self.queries = queries
        self.transaction = transaction  # the shared state store's, where several frontends learn together

    def routes(self) -> list[tuple[str, str, Handler]]:
        """``POST /<app>/update``."""
        return [("POST", r"/(?P<app>[^/]+)/update/?", self.update)]

    async def update(self, request: Request) -> Response:
        """Judge each linked model's output for the input against the label, and let the app's policy learn."""
        q = self.queries
        app = q.state.get_app(request.params["app"])
        if app is None:
            return json_error(404, "Unknown application", f"No application named '{request.params['app']}' is "
                                                          f"registered")
        try:
            obj = orjson.loads(request.body)
            if not isinstance(obj, dict) or "input" not in obj or "input_batch" in obj or "label" not in obj:
                raise BodyError(400, "Json error", f"Feedback needs one input and its label. {FEEDBACK_HINT}")
            label = obj["label"]
            if isinstance(label, bool) or not isinstance(label, int | float | str):
                raise BodyError(400, "Json error", f"label must be a number or a string, got {type(label).__name__}. "
                                                   f"{FEEDBACK_HINT}")
            parsed = await q.offload.parse(parse_rest, request.body, app.input_type, 1)
        except orjson.JSONDecodeError as e:
            return json_error(400, "Json error", f"Error parsing JSON: {e}. {FEEDBACK_HINT}")
        except BodyError as e:
            return json_error(e.status, e.error, e.cause)
        linked = q.state.linked_models(app.name)
        if not linked:
            return json_error(400, "Feedback error", f"No model is linked to application '{app.name}'")
        try:
            policy = q.policy(app, linked)
        except PolicyError as e:
            return json_error(400, "Feedback error", f"The selection policy of '{app.name}' cannot run: {e}")
        x = parsed.inputs[0]
        outputs = dict(zip(linked, await asyncio.gather(*(self.output(app, name, x) for name in linked)),
                           strict=True))
        text = str(label)
        metrics = q.metrics
        metrics.feedback_received.labels(app.name).inc()
        for name, out in outputs.items():
            metrics.feedback_judged.labels(app.name, name).inc()
            if matches(out, text):
                metrics.feedback_agreed.labels(app.name, name).inc()
        if not policy.learns_from_feedback:
            name = q.state.policy(app.name)[0]
            return text_response(f"Feedback received? true (the app's '{name}' selection policy learns nothing "
                                 f"from feedback)")
        async def learn() -> None:
            # On the freshest state (on Kubernetes the transaction first loads what other frontends learned).
            fresh = q.policy(app, q.state.linked_models(app.name))
            fresh.observe(outputs, text)
            q.state.save_policy_state(app.name, fresh.state())

        if self.transaction is not None:
            await self.transaction(learn)
        else:
            await learn()
        return text_response("Feedback received? true")

    async def output(self, app: Any, name: str, x: Any) -> str | None:
        """Model ``name``'s output for ``x``: cached (as a query of that input would have left it), or asked."""
        q = self.queries
        model = q.state.current_model(name)
        if model is None:
            return None
        if q.cache is not None:
            body_key = input_key(RawQuery(b'{"input":' + orjson.dumps(x, option=orjson.OPT_SERIALIZE_NUMPY) + b"}"))
            keys = [input_key(x), body_key]
            for key in keys:
                if key is not None:
                    hit = q.cache.get((model.name, model.version, key))
                    if hit is not None:
                        return hit
        (outcome,) = await q.run_model(app, model, [x])
        return outcome.output
