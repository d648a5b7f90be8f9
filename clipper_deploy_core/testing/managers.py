"""The conformance kit for container-manager authors: ``check_manager(make)`` drives a manager through Clipper's
whole lifecycle against a real cluster, as ``ClipperConnection`` does, and fails with what broke.

``make(cluster_name)`` returns a new, unstarted manager. The check starts a cluster, connects a second manager to
it, deploys a closure, queries it over HTTP, scales to two replicas and back, collects logs, stops the model and
then the cluster, and checks that nothing answers afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cluster import predict


def check_manager(make: Callable[[str], Any], cluster_name: str = "conformance") -> None:
    from ..clipper_connection import ClipperConnection
    from ..deployers.python import create_endpoint
    from ..exceptions import ClipperException

    conn = ClipperConnection(make(cluster_name))
    conn.start_clipper()
    try:
        other = ClipperConnection(make(cluster_name))
        other.connect()
        assert other.get_query_addr() == conn.get_query_addr(), "connect() must find the running cluster"
        create_endpoint(conn, "conf", "doubles", lambda xs: [str(sum(x)) for x in xs])
        assert predict(conn, "conf", {"input": [1.0, 2.5]})["output"] == 3.5
        assert conn.get_num_replicas("conf") == 1
        other.set_num_replicas("conf", 2)  # through the second manager: admin calls carry its own credentials
        assert conn.get_num_replicas("conf") == 2, "set_num_replicas must reach exactly 2"
        conn.set_num_replicas("conf", 1)
        assert conn.get_num_replicas("conf") == 1
        assert predict(conn, "conf", {"input_batch": [[1.0], [2.0]]})["batch_predictions"][1]["output"] == 2.0
        with tempfile.TemporaryDirectory() as logs:
            paths = conn.get_clipper_logs(logs)
            assert paths and all(Path(p).is_file() for p in paths), "get_clipper_logs must write the logs"
        conn.stop_models(["conf"])
        assert conn.get_all_models() == [] and conn.get_all_model_replicas() == []
    finally:
        conn.stop_all()
    try:
        ClipperConnection(make(cluster_name)).connect()
    except ClipperException:
        return
    raise AssertionError("connect() must fail once stop_all() has stopped the cluster")
