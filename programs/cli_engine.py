"""CLI commands that run the engine: replay, flows, flows-health, demo."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any

from billing.settings import Settings
from state.config import RuleSettings


def _rule_flags(parser: argparse.ArgumentParser) -> None:
    for name, info in Settings.model_fields.items():
        if name in RULE_FLAGS:
            parser.add_argument(
                "--" + name.replace("_", "-"),
                type=int,
                default=None,
                help=f"default: $BILLING_{name.upper()} or {info.default}",
            )


# Every rule setting (state/config.py defines them), and the report interval that the
# idle timeout is a multiple of.
RULE_FLAGS = (*(f.name for f in fields(RuleSettings)), "report_interval_ms")


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {n: getattr(args, n) for n in RULE_FLAGS if getattr(args, n, None) is not None}
    return Settings(**overrides)


def cmd_replay(args: argparse.Namespace) -> int:
    from flows.replay import LogLineError, replay_to_path

    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"billing replay: {exc}", file=sys.stderr)
        return 2
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        status = replay_to_path(args.input, args.output, settings.rules(), args.workers, progress)
    except LogLineError as exc:
        print(f"billing replay: {args.input}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"billing replay: {exc}", file=sys.stderr)
        return 2
    print(f"replayed {status.events} events", file=sys.stderr)
    return 0


def cmd_flows(args: argparse.Namespace) -> int:
    from flows.live import run_cluster

    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"billing flows: {exc}", file=sys.stderr)
        return 2
    return run_cluster(settings, args.workers, args.processes)


def cmd_flows_health(args: argparse.Namespace) -> int:
    from flows.live import healthy

    return 0 if healthy(Settings(), args.max_age_s) else 1


def register(sub: Any) -> None:
    from programs import demo

    replay = sub.add_parser("replay", help="run the billing dataflow over a log file")
    replay.add_argument("input", help="SPEC log file (JSON Lines, in log order)")
    replay.add_argument("--output", "-o", default=None, help="output file (default: stdout)")
    replay.add_argument("--workers", type=int, default=1, choices=range(1, 65), metavar="N")
    replay.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    _rule_flags(replay)
    replay.set_defaults(func=cmd_replay)

    flows = sub.add_parser("flows", help="run the live dataflows (Redis in, Redis out)")
    flows.add_argument("--workers", type=int, default=1, help="worker threads per process")
    flows.add_argument(
        "--processes",
        type=int,
        default=1,
        help="cluster processes, restarted together by a supervisor if one dies",
    )
    _rule_flags(flows)
    flows.set_defaults(func=cmd_flows)

    health = sub.add_parser("flows-health", help="exit 0 if the live flows beat recently")
    health.add_argument("--max-age-s", type=float, default=30.0)
    health.set_defaults(func=cmd_flows_health)

    d = sub.add_parser("demo", help="the whole system on an embedded default")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    d.add_argument("--sessions", type=int, default=30, help="concurrent metered sessions")
    d.add_argument("--summary-every", type=float, default=5.0, help="seconds between summaries")
    d.set_defaults(func=lambda args: demo.run(args))
