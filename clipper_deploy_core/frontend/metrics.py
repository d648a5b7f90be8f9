"""Prometheus metrics of one cluster (prometheus-client, on a registry of its own)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import prometheus_package

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class AppMetrics:
    requests: Any
    predictions: Any
    latency: Any


@dataclass(frozen=True)
class ModelMetrics:
    requests: Any
    batch_size: Any
    latency: Any
    cache_lookups: Any
    cache_hits: Any


class Metrics:
    """The cluster's Prometheus series (prometheus-client, on a registry of its own).

    With ``shared_dir`` (several frontend processes serve one cluster), prometheus-client's multiprocess mode: each
    process writes its series to memory-mapped files there, and a scrape of any of them sums every process's
    (counters and histograms; gauges take the largest value among live processes).

    The series are created on first use: importing prometheus-client's metrics is 0.3 s of a frontend's start
    where there is no bytecode, so a frontend opens its ports first and imports them in the background
    (:mod:`.warm_imports`); its web servers are never imported (:mod:`.prometheus_package`).
    """

    registry: Any
    exposed: Any  # what a scrape renders: the registry, or in multiprocess mode every process's files
    requests: Any
    predictions: Any
    app_latency: Any
    defaults: Any
    model_requests: Any
    model_latency: Any
    batch_size: Any
    batch_size_limit: Any
    cache_lookups: Any
    cache_hits: Any
    app_model_queries: Any
    live_replicas: Any
    feedback_received: Any
    feedback_judged: Any
    feedback_agreed: Any

    def __init__(self, shared_dir: Path | None = None) -> None:
        self.shared_dir = shared_dir
        self._apps: dict[str, AppMetrics] = {}
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        self._app_models: dict[tuple[str, str], Any] = {}
        self._watched: list[Callable[[], list[dict[str, Any]]]] = []
        self._lock = threading.Lock()
        self._built = False

    def __getattr__(self, name: str) -> Any:
        # Only a name not set yet lands here: one of the series above, before the first use creates them all.
        if name.startswith("_") or self._built:
            raise AttributeError(name)
        self._build()
        return self.__dict__[name]

    def _build(self) -> None:
        with self._lock:
            if self._built:
                return
            prometheus_package.enter()
            from prometheus_client.metrics import Counter, Gauge, Histogram
            from prometheus_client.registry import CollectorRegistry

            if self.shared_dir is not None:
                # prometheus-client picks its value store at import from PROMETHEUS_MULTIPROC_DIR; the cluster
                # process learns it needs one later, from its arguments, so it sets both before any series exists.
                import prometheus_client.values as values

                os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.shared_dir)
                values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
            r = self.registry = CollectorRegistry()
            self.requests = Counter("clipper_app_requests", "Predict requests per app", ["app"], registry=r)
            self.predictions = Counter("clipper_app_predictions", "Inputs predicted per app", ["app"], registry=r)
            self.app_latency = Histogram("clipper_app_prediction_latency_seconds", "Request latency per app",
                                         ["app"], buckets=LATENCY_BUCKETS, registry=r)
            self.defaults = Counter("clipper_app_default_predictions", "Default outputs by reason",
                                    ["app", "reason"], registry=r)
            self.model_requests = Counter("clipper_model_predictions", "Inputs sent per model version",
                                          ["model", "version"], registry=r)
            self.model_latency = Histogram("clipper_model_batch_latency_seconds", "Batch latency per model version",
                                           ["model", "version"], buckets=LATENCY_BUCKETS, registry=r)
            self.batch_size = Histogram("clipper_model_batch_size", "Inputs per batch", ["model", "version"],
                                        buckets=BATCH_BUCKETS, registry=r)
            self.batch_size_limit = Gauge("clipper_model_batch_size_limit", "Current batch-size cap (AIMD or fixed)",
                                          ["model", "version", "replica"], registry=r, multiprocess_mode="livemax")
            self.cache_lookups = Counter("clipper_model_cache_lookups", "Prediction-cache lookups per model version",
                                         ["model", "version"], registry=r)
            self.cache_hits = Counter("clipper_model_cache_hits", "Prediction-cache hits per model version",
                                      ["model", "version"], registry=r)
            self.exposed = r
            if self.shared_dir is None:
                r.register(_CacheHitRatio(self._cache_counts))
            else:
                self.exposed = CollectorRegistry()
                self.exposed.register(_SummedWithHitRatio(self.shared_dir))
            self.app_model_queries = Counter("clipper_app_model_queries", "Inputs each linked model answered, per "
                                             "app (apps under a selection policy)", ["app", "model"], registry=r)
            self.live_replicas = Gauge("clipper_model_live_replicas", "Connected replicas", ["model", "version"],
                                       registry=r, multiprocess_mode="livemax")
            self.feedback_received = Counter("clipper_app_feedback", "Feedback received per app", ["app"],
                                             registry=r)
            self.feedback_judged = Counter("clipper_app_model_feedback", "Feedback judged per linked model",
                                           ["app", "model"], registry=r)
            self.feedback_agreed = Counter("clipper_app_model_feedback_agreed", "Feedback whose label the model's "
                                           "output matched", ["app", "model"], registry=r)
            for replicas in self._watched:
                self.exposed.register(_ReplicaStates(replicas))
            self._built = True

    def app(self, name: str) -> AppMetrics:
        """The per-app series, looked up once per app (``labels()`` takes a lock and hashes each time)."""
        m = self._apps.get(name)
        if m is None:
            m = self._apps[name] = AppMetrics(self.requests.labels(name), self.predictions.labels(name),
                                              self.app_latency.labels(name))
        return m

    def app_model(self, app: str, model: str) -> Any:
        """The counter of inputs ``model`` ("name:version") answered for ``app``, looked up once per pair."""
        c = self._app_models.get((app, model))
        if c is None:
            c = self._app_models[(app, model)] = self.app_model_queries.labels(app, model)
        return c

    def model(self, name: str, version: str) -> ModelMetrics:
        """The per-model-version series, looked up once per version."""
        m = self._models.get((name, version))
        if m is None:
            m = self._models[(name, version)] = ModelMetrics(
                self.model_requests.labels(name, version), self.batch_size.labels(name, version),
                self.model_latency.labels(name, version), self.cache_lookups.labels(name, version),
                self.cache_hits.labels(name, version))
        return m

    def watch_replicas(self, replicas: Callable[[], list[dict[str, Any]]]) -> None:
        """Report each replica's state (and the last error of one that keeps failing to start) at every scrape."""
        with self._lock:
            if not self._built:
                self._watched.append(replicas)
                return
        self.exposed.register(_ReplicaStates(replicas))

    def unlabel(self, gauge: Any, *labels: str) -> None:
        """Drop one series of ``gauge`` (a replica that went). Multiprocess mode cannot remove a series from the
        files: it reads 0 from then on."""
        if self.shared_dir is None:
            gauge.remove(*labels)
        else:
            gauge.labels(*labels).set(0)

    def _cache_counts(self) -> Iterator[Any]:
        yield from self.cache_lookups.collect()
        yield from self.cache_hits.collect()

    def render(self) -> bytes:
        """The Prometheus text exposition for ``GET /metrics``."""
        prometheus_package.enter()
        from prometheus_client.exposition import generate_latest  # at the first scrape, not at the start

        return generate_latest(self.exposed)


def forget_process(shared_dir: Path, pid: int) -> None:
    """A frontend process of a multiprocess cluster ended: its gauges stop counting (its counters still do)."""
    prometheus_package.enter()
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, str(shared_dir))  # type: ignore[no-untyped-call]


class _ReplicaStates:
    """``clipper_replica_state{model, version, replica, state, last_error} 1``, read from the controller."""

    def __init__(self, replicas: Callable[[], list[dict[str, Any]]]) -> None:
        self.replicas = replicas

    def describe(self) -> list[Any]:
        return []  # collected only at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        family = GaugeMetricFamily("clipper_replica_state", "Replicas by state (1 = in that state); last_error says "
                                   "why one keeps failing to start", labels=["model", "version", "replica", "state",
                                                                            "last_error"])
        for r in self.replicas():
            family.add_metric([r["model_name"], r["model_version"], str(r["model_replica_id"]), r["status"],
                               (r.get("last_error") or "")[:200]], 1.0)
        yield family


class _SummedWithHitRatio:
    """Multiprocess mode: every frontend process's series, read from the shared files once per scrape, and the cache
    hit ratio computed from those same families."""

    def __init__(self, shared_dir: Path) -> None:
        prometheus_package.enter()
        from prometheus_client.multiprocess import MultiProcessCollector

        self.summed = MultiProcessCollector(None, path=str(shared_dir))  # type: ignore[no-untyped-call]

    def describe(self) -> list[Any]:
        return []  # collected only at scrape time

    def collect(self) -> Iterator[Any]:
        families = list(self.summed.collect())  # type: ignore[no-untyped-call]
        yield from families
        yield from _CacheHitRatio(lambda: families).collect()


class _CacheHitRatio:
    """``clipper_model_cache_hit_ratio{model, version}``: hits / lookups so far, at every scrape (Clipper's
    per-model ``cache_hit_ratio``), from the lookup and hit counter families among those ``counts`` yields."""

    def __init__(self, counts: Callable[[], Iterable[Any]]) -> None:
        self.counts = counts

    def describe(self) -> list[Any]:
        return []  # collected only at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        totals: dict[str, dict[tuple[str, str], float]] = {"clipper_model_cache_lookups": {},
                                                            "clipper_model_cache_hits": {}}
        for family in self.counts():
            if family.name not in totals:
                continue
            for s in family.samples:
                if s.name.endswith("_total"):
                    key = (s.labels["model"], s.labels["version"])
                    totals[family.name][key] = totals[family.name].get(key, 0.0) + s.value
        family = GaugeMetricFamily("clipper_model_cache_hit_ratio", "Share of lookups the prediction cache answered",
                                   labels=["model", "version"])
        hits = totals["clipper_model_cache_hits"]
        for key, lookups in totals["clipper_model_cache_lookups"].items():
            if lookups:
                family.add_metric(list(key), hits.get(key, 0.0) / lookups)
        yield family
