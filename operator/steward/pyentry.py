"""Entry point that runs a Python callable in a fresh interpreter.

``python -m steward.pyentry --callable pkg.mod:func --kwargs-json '{...}'``
is what daemons and containers in ``python:`` mode execute: the seed's
``run()`` method, without baking the service definition into an image.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from typing import Any


def load_callable(target: str) -> Callable[..., Any]:
    """Import ``pkg.mod:attr.path``; errors say which part is missing."""
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steward-pyentry")
    parser.add_argument("--callable", required=True, dest="target")
    parser.add_argument("--kwargs-json", default="{}")
    args = parser.parse_args(argv)
    fn = load_callable(args.target)
    result = fn(**json.loads(args.kwargs_json))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
