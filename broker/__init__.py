"""Shoal broker: Kafka protocol server, local log, consumer groups, CLI."""

__version__ = "0.1.0"
