"""`featuremaps models [--json]`: the model zoo's names with one-line descriptions."""
from __future__ import annotations

from ._common import print_json

__all__ = ["add_arguments", "run"]

HELP = "list the model names with one-line descriptions"
DESCRIPTION = None


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the list as one JSON document")


def run(args) -> int:
    from .. import models
    rows = [{"name": n, "description": models.describe(n)} for n in models.names()]
    if args.json:
        print_json({"models": rows})
    else:
        w = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{w}}  {r['description']}")
    return 0
