"""The ``clipper-deploy`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def _plugins(args: argparse.Namespace) -> int:
    from .plugin import get_registry

    infos = get_registry().infos()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    rows = [("NAME", "DISTRIBUTION", "VERSION", "MODEL TYPES")]
    rows += [(i.name, i.distribution, i.version, ", ".join(i.model_types) or "(model=None)") for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(3)) + "  " + r[3])
    return 0


def _conn(args: argparse.Namespace) -> Any:
    """A ``ClipperConnection`` on the manager named by ``--manager`` (``--docker`` is ``--manager docker``), found
    through its entry point; each option is passed where the manager's constructor takes it."""
    import inspect

    from .clipper_connection import ClipperConnection
    from .managers.registry import load_manager

    name = "docker" if args.docker else args.manager
    if name in ("docker", "kubernetes"):
        _require(name, name)
    cls = load_manager(name)
    q, a, r = (int(getattr(args, k, d)) for k, d in (("query_port", 1337), ("admin_port", 1338), ("rpc_port", 7000)))
    offered = {"clipper_query_port": q, "clipper_management_port": a, "clipper_rpc_port": r,
               "insecure_loopback_admin": getattr(args, "insecure_loopback_admin", False)}
    if getattr(args, "frontends", 1) != 1:
        offered["frontends"] = args.frontends
    if getattr(args, "preload", None):
        offered["preload"] = args.preload.split(",")
    if name == "docker":
        offered.update(network_mode=args.network_mode, docker_network=args.docker_network)
    params = inspect.signature(cls).parameters
    for option in ("insecure_loopback_admin", "frontends", "preload"):
        if offered.get(option, False) and option not in params:
            raise SystemExit(f"error: the {name} manager has no --{option.replace('_', '-')}")
    return ClipperConnection(cls(args.cluster, **{k: v for k, v in offered.items() if k in params}))


def _new(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .templates import write_package

    root = write_package(args.kind, args.name, Path(args.dir))
    print(f"wrote {root}: pip install -e '{root}[test]' && pytest {root}")
    return 0


def _managers(args: argparse.Namespace) -> int:
    from .managers.registry import managers

    found = managers()
    if args.json:
        print(json.dumps([m.as_dict() for m in found], indent=2))
        return 0
    _table([("NAME", "CLASS", "DISTRIBUTION", "VERSION")] + [(m.name, m.target, m.distribution, m.version)
                                                             for m in found])
    return 0


def _start(args: argparse.Namespace) -> int:
    conn = _conn(args)
    conn.start_clipper()
    print(f"cluster {args.cluster} started: query {conn.get_query_addr()}, admin {conn.cm.get_admin_addr()}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    _conn(args).stop_all()
    print(f"cluster {args.cluster} stopped")
    return 0


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def _connected(args: argparse.Namespace) -> Any:
    conn = _conn(args)
    conn.connect()
    return conn


def _status(args: argparse.Namespace) -> int:
    conn = _connected(args)
    print(f"cluster {args.cluster}: query {conn.get_query_addr()}, admin {conn.cm.get_admin_addr()}")
    rows = [("APP", "INPUT TYPE", "MODEL", "VERSION", "REPLICAS (ready/total)")]
    replicas = conn.get_all_model_replicas(verbose=True)
    for app in conn.get_all_apps(verbose=True):
        model = app["linked_models"][0] if app["linked_models"] else "-"
        version = conn.get_current_model_version(model) if model != "-" else "-"
        reps = [r for r in replicas if (r["model_name"], r["model_version"]) == (model, version)]
        ready = sum(1 for r in reps if r["status"] == "ready")
        rows.append((app["name"], app["input_type"], model, version, f"{ready}/{len(reps)}"))
    _table(rows)
    return 0


def _policy_text(policy: dict[str, Any]) -> str:
    params = policy.get("params") or {}
    return str(policy["name"]) + (" " + json.dumps(params, separators=(",", ":")) if params else "")


def _apps(args: argparse.Namespace) -> int:
    rows = [("APP", "INPUT TYPE", "SLO (us)", "DEFAULT OUTPUT", "LINKED MODELS", "SELECTION POLICY")]
    rows += [(a["name"], a["input_type"], str(a["latency_slo_micros"]), a["default_output"],
              ",".join(a["linked_models"]) or "-", _policy_text(a.get("selection_policy") or {"name": "default"}))
             for a in _connected(args).get_all_apps(verbose=True)]
    _table(rows)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    url = f"http://{_connected(args).cm.get_admin_addr()}/dashboard"
    print(url)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    return 0


def _policy(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --param takes KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)  # numbers, objects (weights={"a": 90, "b": 10}), lists
        except ValueError:
            params[key] = value
    conn = _connected(args)
    conn.set_selection_policy(args.app, args.policy, **params)
    print(f"{args.app}: {_policy_text(conn.get_app_info(args.app)['selection_policy'])}")
    return 0


def _models(args: argparse.Namespace) -> int:
    rows = [("MODEL", "VERSION", "CURRENT", "INPUT TYPE", "BATCH SIZE", "LABELS")]
    rows += [(m["model_name"], m["model_version"], "*" if m["is_current_version"] else "", m["input_type"],
              str(m["batch_size"]), ",".join(m["labels"])) for m in _connected(args).get_all_models(verbose=True)]
    _table(rows)
    return 0


def _replicas(args: argparse.Namespace) -> int:
    rows = [("MODEL", "VERSION", "REPLICA", "STATUS", "PID/CONTAINER", "RESTARTS", "LAST ERROR")]
    rows += [(r["model_name"], r["model_version"], str(r["model_replica_id"]), r["status"],
              str(r.get("pid") or r.get("container_name")), str(r["restarts"]), r.get("last_error") or "-")
             for r in _connected(args).get_all_model_replicas(verbose=True)]
    _table(rows)
    return 0


def _logs(args: argparse.Namespace) -> int:
    from .envs import cluster_dir

    where = args.dir or str(cluster_dir(args.cluster) / "collected-logs")
    for path in _connected(args).get_clipper_logs(where):
        print(path)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .http_client import request

    try:
        value = json.loads(args.input)
    except ValueError as e:
        print(f"error: INPUT {args.input!r} is not JSON ({e}); for example '[1.0, 2.0]' or '\"text\"'",
              file=sys.stderr)
        return 2
    body = {"input_batch" if args.batch else "input": value}
    status, text = request("POST", f"http://{_connected(args).get_query_addr()}/{args.app}/predict", body)
    print(text)
    if status != 200:
        return 1
    reply = json.loads(text)
    answers = reply.get("batch_predictions", [reply])
    if any(a.get("default") for a in answers) and not args.allow_default:
        print("error: answered with the app's default output (see default_explanation); --allow-default exits 0 "
              "for it", file=sys.stderr)
        return 3
    return 0


def _images_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    _require("docker", "docker")
    import tempfile

    import docker

    from .managers.docker.images import plugin_requirements, wheelhouse_for
    from .plugin import get_registry

    plugins = [args.framework] if args.framework else [i.name for i in get_registry().infos()]
    client = docker.from_env()
    for plugin in plugins:
        tag, reqs = plugin_requirements(plugin)
        with tempfile.TemporaryDirectory(prefix="clipper-wheels-") as tmp:
            # From a clone (an editable or local install) the index lacks these versions: build their wheels.
            wheelhouse = wheelhouse_for(reqs, Path(args.wheelhouse) if args.wheelhouse else None, Path(tmp))
            _build_one(client, plugin, tag, reqs, wheelhouse, args)
    return 0


def _build_one(client: Any, plugin: str, tag: str, reqs: list[str], wheelhouse: Any, args: argparse.Namespace) -> None:
    from pathlib import Path

    from .managers.docker.images import ImageSpec, build_image, default_root_image

    spec = ImageSpec(tag=tag, requirements=reqs, root_image=args.root or default_root_image(), wheelhouse=wheelhouse,
                     ca_bundle=Path(args.ca_bundle) if args.ca_bundle else None,
                     pip_conf=Path(args.pip_conf) if args.pip_conf else None, offline=args.offline,
                     labels={"ai.clipper-deploy.plugin": plugin})
    print(f"building {tag} from {spec.root_image}: {' '.join(reqs)}", flush=True)
    build_image(client, spec, network_mode=args.network)
    print(f"built {tag}", flush=True)


def _require(module: str, extra: str) -> None:
    from .extras import require_extra

    require_extra(module, extra, "This command")


def _k8s_render(args: argparse.Namespace) -> int:
    import secrets

    _require("yaml", "kubernetes")
    import yaml

    from .managers.kubernetes import KubernetesContainerManager
    from .replica_auth import new_secret

    types = {}
    for item in args.service_type:
        key, sep, kind = item.partition("=")
        if not sep:
            print(f"error: --service-type wants SERVICE=TYPE (query=NodePort), not {item!r}", file=sys.stderr)
            return 2
        types[key] = kind
    resources = {k: v for k, v in (("cpu", args.cpu), ("memory", args.memory), ("gpus", args.gpus)) if v}
    models = []
    for item in args.model:
        ref, sep, image = item.partition("=")
        name, colon, version = ref.partition(":")
        if not (sep and colon and name and version and image):
            print(f"error: --model wants NAME:VERSION=IMAGE, not {item!r}", file=sys.stderr)
            return 2
        models.append((name, version, image))
    cm = KubernetesContainerManager(
        args.cluster, namespace=args.namespace, create_namespace_if_not_exists=args.create_namespace,
        service_types=types, num_frontend_replicas=args.num_frontend_replicas, frontend_image=args.frontend_image,
        model_resources={name: resources for name, _, _ in models}, api_client=object())
    docs = cm.render_cluster(args.token or secrets.token_urlsafe(24), args.secret or new_secret())
    docs += [cm.render_model(name, version, args.input_type, image, args.replicas) for name, version, image in models]
    class PlainDumper(yaml.SafeDumper):  # type: ignore[misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True  # reviewers read rendered manifests in diffs: no &id001 / *id001 for repeated maps

    sys.stdout.write(yaml.dump_all(docs, Dumper=PlainDumper, sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipper-deploy", description="Deploy models as live prediction endpoints.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plugins", help="list installed framework plugins")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_plugins)
    p = sub.add_parser("new", help="write a new framework plugin or container manager package, ready to test")
    p.add_argument("kind", choices=("plugin", "manager"))
    p.add_argument("name", help="lowercase, e.g. xgboost")
    p.add_argument("--dir", default=".", help="where to write it (default: here)")
    p.set_defaults(func=_new)
    p = sub.add_parser("managers", help="list installed container managers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_managers)
    images = sub.add_parser("images", help="container images").add_subparsers(dest="images_command", required=True)
    p = images.add_parser("build", help="build the base image of core and of each installed plugin")
    p.add_argument("--framework", help="only this plugin (e.g. pytorch; 'python' for core)")
    p.add_argument("--from", dest="root", help="root image (default: python:<this minor>-slim)")
    p.add_argument("--wheelhouse", help="a folder of wheels pip looks in first (--find-links)")
    p.add_argument("--offline", action="store_true", help="install from the wheelhouse only")
    p.add_argument("--ca-bundle", help="a CA bundle for pip inside the build")
    p.add_argument("--pip-conf", help="a pip.conf for the build")
    p.add_argument("--network", default="host", help="the build's network mode (default: host)")
    p.set_defaults(func=_images_build)
    k8s = sub.add_parser("k8s", help="Kubernetes").add_subparsers(dest="k8s_command", required=True)
    p = k8s.add_parser("render", help="print the manifests start_clipper and deploy_model create, as YAML")
    p.add_argument("--cluster", default="default-cluster")
    p.add_argument("--namespace", default="default")
    p.add_argument("--create-namespace", action="store_true", help="include the Namespace")
    p.add_argument("--frontend-image", help="default: the core base image")
    p.add_argument("--num-frontend-replicas", type=int, default=1)
    p.add_argument("--service-type", action="append", default=[], metavar="SERVICE=TYPE",
                   help="query|management = ClusterIP|NodePort|LoadBalancer (default NodePort)")
    p.add_argument("--token", help="the admin token for the Secret (default: a new random one)")
    p.add_argument("--secret", help="the secret replicas prove to the frontend (default: a new random one)")
    p.add_argument("--model", action="append", default=[], metavar="NAME:VERSION=IMAGE",
                   help="also render this model version's Deployment")
    p.add_argument("--input-type", default="doubles", help="of the --model versions")
    p.add_argument("--replicas", type=int, default=1, help="of each --model")
    p.add_argument("--cpu", help="CPU request and limit of each --model, e.g. 500m")
    p.add_argument("--memory", help="memory request and limit of each --model, e.g. 1Gi")
    p.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu of each --model")
    p.set_defaults(func=_k8s_render)
    for name, func, help_text in (("start", _start, "start a cluster (local processes, or --docker)"),
                                  ("stop", _stop, "stop a cluster, its replicas and its state"),
                                  ("status", _status, "apps, models, versions and replica health"),
                                  ("apps", _apps, "list applications"), ("models", _models, "list model versions"),
                                  ("replicas", _replicas, "list replicas and their health"),
                                  ("logs", _logs, "copy the cluster's and replicas' logs into a folder"),
                                  ("predict", _predict, "send one query to an app"),
                                  ("policy", _policy, "set how an app picks among its linked models"),
                                  ("dashboard", _dashboard, "print the address of the cluster's live dashboard")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--cluster", default="default-cluster")
        p.add_argument("--manager", default="local",
                       help="the container manager, by name (clipper-deploy managers lists them; default: local)")
        p.add_argument("--docker", action="store_true", help="same as --manager docker (DOCKER_HOST)")
        p.add_argument("--network-mode", choices=("bridge", "host"), default="bridge", help="with --docker")
        p.add_argument("--docker-network", default="clipper_network", help="with --docker, the bridge network")
        if name == "start":
            for flag, default in (("--query-port", 1337), ("--admin-port", 1338), ("--rpc-port", 7000)):
                p.add_argument(flag, type=int, default=default, help=f"0 picks a free port (default {default})")
            p.add_argument("--frontends", type=int, default=1,
                           help="frontend processes serving the query port, about one per core to spare (default 1)")
            p.add_argument("--preload", default="", metavar="MODULES",
                           help="comma-separated modules (e.g. torch) a replica template imports as the cluster "
                                "starts, so the first deploy that needs them skips the import (local manager)")
            p.add_argument("--insecure-loopback-admin", action="store_true",
                           help="accept admin mutations without the token from loopback, for Clipper's own "
                                "clipper_admin client (any local process can then deploy code as you)")
        if name == "logs":
            p.add_argument("--dir", default=None,
                           help="where to copy them (default: collected-logs/ in the cluster's own directory)")
        if name == "dashboard":
            p.add_argument("--open", action="store_true", help="also open it in a browser")
        if name == "policy":
            p.add_argument("app")
            p.add_argument("policy", help="default, weighted, or an installed policy's name")
            p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                           help='a parameter, its value as JSON where it parses: --param weights=\'{"a": 95, "b": 5}\'')
        if name == "predict":
            p.add_argument("app")
            p.add_argument("input", help='JSON, e.g. "[1.0, 2.0]"')
            p.add_argument("--batch", action="store_true", help="input is a list of inputs (input_batch)")
            p.add_argument("--allow-default", action="store_true",
                           help="exit 0 also when the answer is the app's default output (else exit 3)")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .exceptions import ClipperException

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ClipperException as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
