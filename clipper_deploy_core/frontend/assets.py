"""The files the dashboard and the API docs page serve (``dashboard_assets/``), read when a page asks for them:
``importlib.resources``, and tempfile with it, are not otherwise needed by the cluster's start."""

from __future__ import annotations


def read_asset(name: str) -> bytes:
    """The bytes of ``dashboard_assets/<name>``."""
    from importlib import resources

    return (resources.files("clipper_deploy_core.frontend") / "dashboard_assets" / name).read_bytes()


def plotly_js() -> bytes | None:
    """plotly's own bundle, where plotly is installed (the ``dashboard`` extra); ``None`` where it is not."""
    from importlib import resources

    try:
        return (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        return None
