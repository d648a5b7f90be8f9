"""The ``clipper-deploy`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipper-deploy", description="Deploy models as live prediction endpoints.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plugins", help="list installed framework plugins")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_plugins)
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
