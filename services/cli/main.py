"""The `yuqing` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from services.common.broker import DEFAULT_KAFKA_VERSION, EmbeddedBroker
from services.common.exceptions import YuqingError

__all__ = ["main"]

# Spelled out rather than imported from schemas.events, to keep `yuqing --help` free of pydantic's import
# time; tests/ingest/test_replay.py checks the two agree.
_PLATFORMS = ("weibo", "wechat", "douyin", "xiaohongshu", "zhihu", "bilibili", "news", "forum")


def _broker(args: argparse.Namespace) -> int:
    from services.common.broker import BrokerSecurity

    security = None
    if args.action == "start" and (args.tls or args.mtls or args.sasl):
        security = BrokerSecurity(
            tls=args.tls or args.mtls,
            sasl=args.sasl,
            # "requested": a client certificate, when offered, must be from the broker's CA.
            client_auth="required" if args.mtls else "requested" if args.tls else "none",
        )
    broker = EmbeddedBroker(
        port=args.port,
        home=Path(args.dir) if args.dir else None,
        version=args.kafka_version,
        nodes=args.nodes,
        security=security,
    )
    if args.action == "start":
        broker.start()
        pids = ", ".join(str(n.status()) for n in broker.node_list)
        nodes = f"{len(broker.node_list)} nodes, " if len(broker.node_list) > 1 else ""
        print(
            f"Kafka {broker.version} running on {broker.bootstrap} ({nodes}pid {pids}); "
            f"log: {broker.log_file}"
        )
        _print_client_settings(broker)
    elif args.action == "stop":
        print("stopped" if broker.stop() else "not running")
    else:
        running = [(n.node_id, n.status()) for n in broker.node_list]
        if all(pid for _, pid in running):
            print(f"running on {broker.bootstrap} (pid {', '.join(str(pid) for _, pid in running)})")
            return 0
        if any(pid for _, pid in running):
            down = ", ".join(str(node) for node, pid in running if not pid)
            print(f"partly running on {broker.bootstrap}: node(s) {down} down")
            return 1
        print("not running")
        return 3
    return 0


def _print_client_settings(broker: EmbeddedBroker) -> None:
    """What a client sets to reach this broker; passwords stay in the 0600 file, never on the terminal."""
    env = broker.client_env()
    if len(env) == 1:
        return
    print("clients connect with these settings:")
    for key, value in env.items():
        secret = "PASSWORD" in key
        print(f"  {key}={'(in ' + str(broker.client_env_file) + ')' if secret else value}")
    if broker.security is not None and broker.security.client_auth == "requested":
        print(
            f"  mutual TLS is optional: a client certificate and its key are in {broker.tls_files.ca.parent}"
        )
    if broker.client_env_file.exists():
        print(f"load them with: set -a; . {broker.client_env_file}; set +a")


def _topics(args: argparse.Namespace) -> int:
    import asyncio

    from services.common.kafka import ensure_topics_sync
    from services.common.kafka_security import check_connection
    from services.common.settings import CommonSettings, load_settings

    settings = load_settings(CommonSettings)
    asyncio.run(check_connection(settings))
    created = ensure_topics_sync(settings)
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _schemas(args: argparse.Namespace) -> int:
    if args.action == "asyncapi":
        from schemas.asyncapi import render_asyncapi

        target = Path(args.dir or "docs/asyncapi.yaml")
        target.write_text(render_asyncapi(), encoding="utf-8")
        print(target)
        return 0
    if args.action == "docs":
        from schemas.docs import render_contracts

        target = Path(args.dir or "docs/contracts.md")
        target.write_text(render_contracts(), encoding="utf-8")
        print(target)
        return 0
    from schemas.export import export

    for path in export(Path(args.dir or "schemas/json")):
        print(path)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from services.cli.runner import RestartPolicy, Stack, supervise

    stack = Stack.from_env(api_port=args.api_port, kafka_port=args.kafka_port)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        stack.start()
        print(
            f"yuqing is running: ingest API http://127.0.0.1:{stack.api_port}/docs, console "
            f"http://127.0.0.1:{stack.desk_port}/console (operator API "
            f"http://127.0.0.1:{stack.desk_port}/docs), worker metrics on ports "
            f"{stack.base_web_port + 1}-{stack.base_web_port + 3}; logs in {stack.log_dir}. Ctrl-C stops."
        )

        def say(line: str) -> None:
            print(f"{line}; see {stack.log_dir}", file=sys.stderr, flush=True)

        return supervise(stack, RestartPolicy(), lambda: stopping, say)
    finally:
        print("stopping …", flush=True)
        stack.stop()


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port number, got {text!r}") from None
    if not 0 < port < 65533:
        raise argparse.ArgumentTypeError(f"expected a TCP port number (1-65532), got {text!r}")
    return port


def _positive_speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1 or 10, got {text!r}") from None
    if not (speed > 0 and speed != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text!r}")
    return speed


_EVENT_CLOCK = "YUQING_WINDOW_CLOCK"


def _replay(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from aiokafka.errors import KafkaError

    from schemas.topics import Topics
    from services.common.kafka import ensure_topics_sync
    from services.common.kafka_security import check_connection, client_kwargs
    from services.common.settings import CommonSettings, load_settings
    from services.ingest.replay import replay

    settings = load_settings(CommonSettings)
    path = Path(args.file)
    if not path.is_file():
        print(f"yuqing: error: {path}: no such file", file=sys.stderr)
        return 2
    if args.event_time and os.environ.get(_EVENT_CLOCK, "").strip().lower() != "event":
        # The stack's scoring workers read the same YUQING_* environment (`yuqing dev`, a compose file).
        print(
            f"yuqing: error: --event-time needs a stack whose scoring windows follow event time, and "
            f"{_EVENT_CLOCK} is {os.environ.get(_EVENT_CLOCK, 'unset')!r} here: start the stack with "
            f"{_EVENT_CLOCK}=event (e.g. `{_EVENT_CLOCK}=event yuqing dev`) and run the replay with it set "
            "too; with the wall clock, every window moves to today and history arrives too late to count",
            file=sys.stderr,
        )
        return 2
    if args.event_time and args.speed is None and settings.partitions > 1:
        print(
            f"yuqing: warning: {settings.partitions} partitions at full speed: hits reach the windows out "
            "of order, so tiers and counts come out right but a change may be reported later than it was "
            "reached; for the timeline as it was live use --speed, or YUQING_PARTITIONS=1",
            file=sys.stderr,
        )
    try:
        asyncio.run(check_connection(settings))
        ensure_topics_sync(settings)
        result = asyncio.run(
            replay(
                Path(args.file),
                settings.kafka_bootstrap,
                Topics.with_prefix(settings.topic_prefix).posts_raw,
                speed=args.speed,
                platform=args.platform,
                report=Path(args.report) if args.report else None,
                progress=not args.quiet,
                event_time=args.event_time,
                kafka_client=client_kwargs(settings),
            )
        )
    except (OSError, KafkaError) as exc:
        print(f"yuqing: error: replay stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(
        f"sent {result.sent} posts in {result.seconds:.1f}s; {result.bad} bad lines"
        + (f" (see {args.report})" if args.report and result.bad else "")
        + (
            f"; {result.published} without an observation time took their publish time"
            if result.published
            else ""
        )
    )
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from services.cli.backtest import run_backtest

    path = Path(args.file)
    if not path.is_file():
        print(f"yuqing: error: {path}: no such file", file=sys.stderr)
        return 2
    config = Path(args.config) if args.config else None
    if config is not None and not config.is_file():
        print(f"yuqing: error: --config {config}: no such file", file=sys.stderr)
        return 2
    stem = path.name.split(".")[0] or "backtest"
    return run_backtest(
        path,
        config,
        platform=args.platform,
        json_out=Path(args.json or f"{stem}.timeline.json"),
        csv_out=Path(args.csv or f"{stem}.timeline.csv"),
        progress=args.progress,
    )


def _demo(args: argparse.Namespace) -> int:
    from services.cli.demo import run_demo

    return run_demo(timeout=args.timeout, speed=args.speed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="yuqing", description="Early warning for online opinion crises.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="manage the embedded Kafka (KRaft): one node, or a local cluster")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=_port, default=9092, help="client port (a cluster's node i: port + i - 1)")
    p.add_argument("--kafka-version", default=DEFAULT_KAFKA_VERSION)
    p.add_argument(
        "--nodes", type=int, default=None, help="start a cluster of N combined broker+controller nodes"
    )
    p.add_argument("--tls", action="store_true", help="a TLS listener, certificates from an in-memory CA")
    p.add_argument("--sasl", choices=["scram", "plain"], default=None, help="SASL users (SCRAM or PLAIN)")
    p.add_argument("--mtls", action="store_true", help="require a client certificate (implies --tls)")
    p.add_argument("--dir", default=None, help="the broker's home (default ~/.cache/yuqing/broker/PORT)")
    p.set_defaults(func=_broker)

    p = sub.add_parser("topics", help="create every yuqing topic (idempotent)")
    p.add_argument("action", choices=["create"])
    p.set_defaults(func=_topics)

    p = sub.add_parser("worker", help="run one service in the foreground")
    p.add_argument("service", choices=["ingest", "desk", "scoring", "escalation", "notifier"])
    p.set_defaults(func=lambda a: _worker(a.service))

    p = sub.add_parser("schemas", help="export JSON Schemas of every event, or render docs/contracts.md")
    p.add_argument("action", choices=["export", "docs", "asyncapi"])
    p.add_argument(
        "dir", nargs="?", default=None, help="schemas/json, docs/contracts.md or docs/asyncapi.yaml"
    )
    p.set_defaults(func=_schemas)

    p = sub.add_parser(
        "dev", help="run the whole stack locally (embedded Kafka unless YUQING_KAFKA_BOOTSTRAP)"
    )
    p.add_argument("--kafka-port", type=_port, default=None, help="port of the embedded Kafka (default 9092)")
    p.add_argument(
        "--api-port", type=_port, default=None, help="port of the API (default YUQING_API_PORT or 8000)"
    )
    p.set_defaults(func=_dev)

    p = sub.add_parser("replay", help="stream a JSONL/NDJSON file of posts into posts.raw")
    p.add_argument("file")
    p.add_argument(
        "--speed",
        type=_positive_speed,
        default=None,
        help="1 = original pace, 10 = ten times faster; default max",
    )
    p.add_argument(
        "--platform",
        type=str.lower,
        choices=_PLATFORMS,
        default=None,
        help="lines are this platform's native payloads",
    )
    p.add_argument("--report", default=None, help="write bad lines (number, reason) here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--event-time",
        action="store_true",
        help="history: keep the lines' own times (publish time when a line has no observation time); needs "
        "a stack run with YUQING_WINDOW_CLOCK=event",
    )
    p.set_defaults(func=_replay)

    p = sub.add_parser(
        "backtest",
        help="score a JSONL/NDJSON file of posts in process (no Kafka): tier timeline, hits per rule group",
    )
    p.add_argument("file")
    p.add_argument("--config", default=None, help="the YAML rules to test (default: the bundled example)")
    p.add_argument(
        "--platform",
        type=str.lower,
        choices=_PLATFORMS,
        default=None,
        help="lines are this platform's native payloads",
    )
    p.add_argument("--json", default=None, help="write the timeline here (default FILE.timeline.json)")
    p.add_argument("--csv", default=None, help="write the timeline here (default FILE.timeline.csv)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    p.set_defaults(func=_backtest)

    p = sub.add_parser("demo", help="run the stack on a bundled sample crisis and check the outcome")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--speed", type=float, default=270.0, help="how much faster than real time to replay")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except YuqingError as exc:
        print(f"yuqing: error: {exc}", file=sys.stderr)
        return 2


def _worker(service: str) -> int:
    from services.cli.runner import run_service

    run_service(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
