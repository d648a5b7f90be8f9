"""The query port, the same in every frontend process of a cluster: its routes (Clipper's REST API, V2, feedback,
the OpenAPI description, ``/metrics``) and how an HTTP port is started."""

from __future__ import annotations

import argparse
import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

from ..exceptions import ClipperException
from ..frontend.admin_api import ReplicaController
from ..frontend.dispatch import Dispatcher
from ..frontend.feedback import FeedbackAPI
from ..frontend.http import App, Limits, bind
from ..frontend.http_server import HttpServer
from ..frontend.metrics import Metrics
from ..frontend.offload import Offload
from ..frontend.openapi import OpenAPIDocs
from ..frontend.query_api import QueryAPI, query_error
from ..frontend.state import ClusterState
from ..frontend.v2_api import V2API

Transaction = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


def query_app(state: ClusterState, dispatcher: Dispatcher, metrics: Metrics, controller: ReplicaController,
              args: argparse.Namespace, offload: Offload, transaction: Transaction | None) -> App:
    """The query port's app. ``transaction`` runs a read-modify-write of the state that other frontends may race
    (what a selection policy learns from feedback); None where this process is the state's only writer."""
    query_api = QueryAPI(state, dispatcher, metrics, controller.expected, args.max_batch_rows, offload,
                         controller.failure)
    metrics.watch_replicas(controller.replicas)
    feedback = FeedbackAPI(query_api, transaction)
    docs = OpenAPIDocs(state, args.max_batch_rows)
    return App(V2API(query_api).routes() + query_api.routes() + feedback.routes() + docs.routes(),
               args.max_body, query_error)


async def start_ports(ports: list[tuple[str, App, str, int, Limits, bool]]) -> tuple[list[HttpServer], dict[str, int]]:
    """Start one server per ``(label, app, host, port, limits, reuse_port)``; once this returns, all listen:
    ``([server], {label: bound port})``. Raises why one could not start."""
    servers, bound = [], {}
    for label, app, host, port, limits, reuse_port in ports:
        try:
            sock = bind(host, port, reuse_port)
        except OSError as e:
            raise ClipperException(f"The {label} port cannot listen on {host}:{port}: {e.strerror or e}") from None
        bound[label] = sock.getsockname()[1]
        server = HttpServer(app, limits)
        await server.start(sock)
        servers.append(server)
    return servers, bound


async def stop_ports(servers: list[HttpServer]) -> None:
    """Stop the servers :func:`start_ports` started."""
    await asyncio.gather(*(server.stop() for server in servers))


def freeze_startup_objects() -> None:
    """Move what the start created (modules, routes, state) out of the collector's reach: a full collection walks
    every tracked object, and at 32 connections those walks were the 99th percentile (19 ms against a 4 ms
    median for echo; 8 ms once frozen)."""
    gc.collect()
    gc.freeze()
