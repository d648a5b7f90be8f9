"""The live dashboard on the admin port: ``GET /dashboard`` (one page, no build step), ``GET /dashboard/data`` (the
same facts as JSON, for the page and for scripts) and the page's assets.

Everything is read from what the frontend already keeps (its state, its replica controller and its Prometheus
registry), so the dashboard costs the query path nothing. Plotly's JavaScript is served from the installed ``plotly``
package (``pip install 'clipper-deploy-core[dashboard]'``), never fetched from the internet. Reading needs no token;
the page's actions (scale, roll back) are the admin API's own mutations and need it.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from .admin_api import ReplicaController
from .admin_guard import AdminGuard
from .assets import plotly_js, read_asset
from .http import Request, Response, json_response
from .metrics import Metrics
from .state import ClusterState

ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
MISSING_PLOTLY = ("The dashboard draws its charts with plotly, which is not installed where the cluster runs: "
                  "pip install 'clipper-deploy-core[dashboard]'")


class Dashboard:
    """The dashboard's routes, behind the admin port's Host and Origin checks."""

    def __init__(self, state: ClusterState, controller: ReplicaController, metrics: Metrics, guard: AdminGuard,
                 frontend: str | None = None) -> None:
        self.state, self.controller, self.metrics, self.guard = state, controller, metrics, guard
        # Which frontend this page shows (several run on Kubernetes: the pod's name).
        self.frontend = frontend or os.environ.get("CLIPPER_REPLICA_NAME") or socket.gethostname()
        self._plotly: bytes | None = None

    def routes(self) -> list[tuple[str, str, Any]]:
        """``GET /dashboard``, ``/dashboard/data`` and ``/dashboard/assets/<name>``."""
        return [("GET", "/dashboard/?", self._guarded(self.page)), ("GET", "/dashboard/data", self._guarded(self.data)),
                ("GET", r"/dashboard/assets/(?P<name>[\w.]+)", self._guarded(self.asset))]

    def _guarded(self, endpoint: Any) -> Any:
        async def guarded(request: Request) -> Response:
            refused = self.guard.refuse(request, False)
            return refused if refused is not None else await endpoint(request)
        return guarded

    async def page(self, request: Request) -> Response:
        """The page itself: plain HTML; the script fills it from ``/dashboard/data``."""
        return Response(200, read_asset("dashboard.html"), "text/html; charset=utf-8")

    async def asset(self, request: Request) -> Response:
        """The page's script and style, and plotly's JavaScript from the installed package."""
        name = request.params["name"]
        if name == "plotly.min.js":
            if self._plotly is None:
                self._plotly = plotly_js()
            if self._plotly is None:
                return json_response({"error": "Not installed", "cause": MISSING_PLOTLY}, 503)
            return Response(200, self._plotly, "text/javascript; charset=utf-8")
        if name not in ASSETS:
            return json_response({"error": "Not found", "cause": f"No dashboard asset named {name!r}"}, 404)
        return Response(200, read_asset(name), ASSETS[name])

    async def data(self, request: Request) -> Response:
        """Apps, models and replicas, and the counters the charts are drawn from (cumulative: a client takes the
        difference between two reads)."""
        return json_response(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """What ``/dashboard/data`` returns."""
        caps: dict[tuple[str, str, str], float] = {}
        series: dict[str, Any] = {"apps": {}, "models": {}}
        for family in self.metrics.exposed.collect():
            for s in family.samples:
                self._add_sample(series, caps, s.name, s.labels, s.value)
        replicas: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in self.controller.replicas():
            replicas.setdefault((r["model_name"], r["model_version"]), []).append({
                "id": r["model_replica_id"], "status": r["status"], "restarts": r.get("restarts", 0),
                "last_error": r.get("last_error"),
                "batch_cap": caps.get((r["model_name"], r["model_version"], str(r["model_replica_id"])))})
        apps = []
        for app in self.state.apps():
            info = self.state.app_dict(app)
            apps.append({"name": app.name, "input_type": app.input_type, "slo_micros": app.latency_slo_micros,
                         "default_output": app.default_output, "linked_models": info["linked_models"],
                         "selection_policy": info["selection_policy"]})
        models = [{"name": m.name, "version": m.version, "current": m.is_current, "batch_size": m.batch_size,
                   "replicas": sorted(replicas.get((m.name, m.version), []), key=lambda r: r["id"])}
                  for m in self.state.models()]
        return {"frontend": self.frontend, "time": time.time(), "apps": apps, "models": models, "series": series}

    @staticmethod
    def _add_sample(series: dict[str, Any], caps: dict[tuple[str, str, str], float], name: str,
                    labels: dict[str, str], value: float) -> None:
        if name == "clipper_model_batch_size_limit":
            caps[(labels["model"], labels["version"], labels["replica"])] = value
            return
        if name.startswith("clipper_app_"):
            app = series["apps"].setdefault(labels.get("app", ""), {"requests": 0.0, "predictions": 0.0,
                                                                   "latency_buckets": [], "defaults": {}})
            if name == "clipper_app_requests_total":
                app["requests"] = value
            elif name == "clipper_app_predictions_total":
                app["predictions"] = value
            elif name == "clipper_app_prediction_latency_seconds_bucket":
                le = float(labels["le"])
                app["latency_buckets"].append([le if le != float("inf") else None, value])  # JSON has no Infinity
            elif name == "clipper_app_default_predictions_total":
                app["defaults"][labels["reason"]] = value
        elif name.startswith("clipper_model_") and "model" in labels and "version" in labels:
            key = f"{labels['model']}:{labels['version']}"
            model = series["models"].setdefault(key, {"batches": 0.0, "inputs_batched": 0.0, "predictions": 0.0,
                                                      "batch_latency_buckets": []})
            if name == "clipper_model_batch_latency_seconds_bucket":
                le = float(labels["le"])
                model["batch_latency_buckets"].append([le if le != float("inf") else None, value])
            elif name == "clipper_model_batch_size_count":
                model["batches"] = value
            elif name == "clipper_model_batch_size_sum":
                model["inputs_batched"] = value
            elif name == "clipper_model_predictions_total":
                model["predictions"] = value
