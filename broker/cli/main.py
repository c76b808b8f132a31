"""Entry point of the `shoal` console script."""

from __future__ import annotations

import argparse
import sys

from broker import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal",
        description="Shoal: a Kafka-API-compatible streaming broker, tiered-storage-first.",
    )
    parser.add_argument("--version", action="version", version=f"shoal {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    start = commands.add_parser(
        "start", help="run a node in the foreground",
        description="Run one Shoal node until SIGTERM/SIGINT. Without --config the embedded "
                    "defaults give a single-node broker on 127.0.0.1:9092 with tiered storage "
                    "to ./shoal-data/cloud. Any key can be set as SHOAL_<SECTION>_<KEY>.")
    start.add_argument("--config", metavar="FILE", help="YAML node config (see docs/configuration.md)")
    try:
        from broker.cli import client_commands
    except ImportError:
        client_commands = None
    if client_commands is not None:
        client_commands.register(commands, parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.command == "start":
        from broker.cli.start import run_start

        return run_start(arguments.config)
    if arguments.command is None:
        parser.print_help()
        return 2
    return arguments.run(arguments)


if __name__ == "__main__":
    sys.exit(main())
