"""CLI commands that run the engine: replay, flows, demo."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    from billing import demo

    d = sub.add_parser("demo", help="the whole system on an embedded default")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    d.set_defaults(func=lambda args: demo.run(args))
