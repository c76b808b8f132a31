"""Building the argparse tree the same way for every client command: a description, an
examples epilog, the shared connection options, and a guarded `run` function."""

from __future__ import annotations

import argparse
import textwrap
from typing import Callable

from broker.cli.connection import connection_options, guarded

EXIT_USAGE = 2
EXAMPLES_HEADING = "examples:"


class _HelpFormatter(argparse.HelpFormatter):
    """Descriptions are filled paragraph by paragraph; the examples epilog stays as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(EXAMPLES_HEADING):
            return text
        paragraphs = [" ".join(paragraph.split()) for paragraph in text.split("\n\n")]
        return "\n\n".join(textwrap.fill(paragraph, width, initial_indent=indent, subsequent_indent=indent)
                           for paragraph in paragraphs if paragraph)


class _IntermixedParser(argparse.ArgumentParser):
    """Options may come anywhere, also between positionals (`produce TOPIC -k K V1 V2`);
    plain argparse would take `TOPIC` and an empty VALUE list before `-k`. A command is a
    leaf, so a left-over argument is an error reported with this command's usage."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            namespace, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


TOP_LEVEL_EXAMPLES = """
shoal start --config shoal.yaml
shoal topic create orders -p 3
shoal produce orders -k customer-7 'hello'
shoal consume orders -e
shoal -b kafka-1:9092,kafka-2:9092 group describe billing
"""


def describe_top_level(parser: argparse.ArgumentParser) -> None:
    """Examples under `shoal --help`, in the same style as every command's."""
    parser.formatter_class = _HelpFormatter
    parser.epilog = (EXAMPLES_HEADING + "\n" + textwrap.indent(TOP_LEVEL_EXAMPLES.strip(), "  ")
                     + "\n\nRun 'shoal COMMAND --help' for the options of a command.")


def add_group(subparsers, name: str, summary: str, description: str):
    """A command with subcommands (`shoal topic ...`); returns its subparsers action."""
    parser = subparsers.add_parser(
        name, help=summary, description=textwrap.dedent(description).strip(),
        formatter_class=_HelpFormatter)
    parser.set_defaults(run=_help_printer(parser))
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


def add_command(subparsers, name: str, summary: str, description: str, examples: str,
                run: Callable[[argparse.Namespace], int], usage: str | None = None) -> argparse.ArgumentParser:
    """A runnable command with the connection options (-b, -X, --timeout)."""
    parser = subparsers.add_parser(
        name, help=summary, description=textwrap.dedent(description).strip(), usage=usage,
        epilog=EXAMPLES_HEADING + "\n" + textwrap.indent(textwrap.dedent(examples).strip(), "  "),
        formatter_class=_HelpFormatter, parents=[connection_options()])
    parser.__class__ = _IntermixedParser  # the subparsers action built a plain ArgumentParser
    parser.set_defaults(run=guarded(run))
    return parser


def _help_printer(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def print_help(arguments: argparse.Namespace) -> int:
        parser.print_help()
        return EXIT_USAGE
    return print_help
