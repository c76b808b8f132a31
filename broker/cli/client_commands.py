"""The `shoal` client commands: Kafka clients (confluent-kafka) for any Kafka-API broker.

Each group of commands lives in its own module with `register(subparsers)`; a module
may also offer `register_topic_subcommands(topic_subparsers)` to add `shoal topic <name>`
commands (tiered storage adds `shoal topic recover` that way). Modules not written yet
are skipped, so the CLI runs while commands are being added.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from broker.cli.command_parser import describe_top_level
from broker.cli.connection import global_connection_options

COMMAND_MODULES = (
    "topic_commands",
    "produce_command",
    "consume_command",
    "group_commands",
    "tier_commands",
    "cluster_commands",
)


def _load_modules() -> list[ModuleType]:
    modules = []
    for name in COMMAND_MODULES:
        try:
            modules.append(importlib.import_module(f"broker.cli.{name}"))
        except ModuleNotFoundError as error:
            if error.name != f"broker.cli.{name}":
                raise
    return modules


def register(subparsers, top_parser=None) -> None:
    """Add every client command to the `shoal` parser's subcommands, and the connection
    options to `shoal` itself so they may also come first (`shoal -b HOST topic list`)."""
    if top_parser is not None:
        global_connection_options(top_parser)
        describe_top_level(top_parser)
    modules = _load_modules()
    topic_subparsers = None
    for module in modules:
        registered = module.register(subparsers)
        if module.__name__.endswith(".topic_commands"):
            topic_subparsers = registered
    for module in modules:
        extend_topic = getattr(module, "register_topic_subcommands", None)
        if extend_topic is not None and topic_subparsers is not None:
            extend_topic(topic_subparsers)
