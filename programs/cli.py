"""The `billing` command: serve, flows, webhooks, replay, export, demo."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from billing.settings import Settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ingest_api.app import create_app

    uvicorn.run(
        create_app(Settings()),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level in ("debug", "info"),
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from programs.export import export, parse_time_ms

    try:
        since = None if args.since is None else parse_time_ms(args.since)
        until = None if args.until is None else parse_time_ms(args.until)
    except ValueError as exc:
        print(f"billing export: {exc}", file=sys.stderr)
        return 2
    settings = Settings()
    out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    try:
        count = export(
            settings.redis_client(),
            settings.keys,
            out,
            since,
            until,
        )
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {count} events", file=sys.stderr)
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from webhooks.dispatcher import Retired, serve

    if args.retire:
        from webhooks.retire import EndpointsRemain, retire

        try:
            gone = asyncio.run(retire(Settings()))
        except EndpointsRemain as exc:
            print(f"billing webhooks --retire: {exc}", file=sys.stderr)
            return 2
        print(f"deleted the dispatchers' group on {gone} output stream(s)", file=sys.stderr)
        return 0
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        asyncio.run(serve(Settings()))
    except Retired as exc:
        print(f"billing webhooks: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="billing", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(func=cmd_serve)

    hooks = sub.add_parser(
        "webhooks", help="deliver outputs to webhook endpoints (run any number of replicas)"
    )
    hooks.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    hooks.add_argument(
        "--retire",
        action="store_true",
        help="delete the dispatchers' consumer group on each output stream and exit, so the "
        "streams are trimmed by time again (refused while an endpoint exists; running "
        "dispatchers stop, and none runs again until an endpoint exists)",
    )
    hooks.set_defaults(func=cmd_webhooks)

    export = sub.add_parser("export", help="write the live input stream as a log file")
    export.add_argument("--output", "-o", default=None)
    export.add_argument(
        "--since", default=None, help="first ts to export (ms, or ISO 8601 with zone), inclusive"
    )
    export.add_argument(
        "--until", default=None, help="ts to stop before (ms, or ISO 8601 with zone), exclusive"
    )
    export.set_defaults(func=cmd_export)

    from programs import cli_engine

    cli_engine.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
