"""Classic consumer groups: the coordinator state machine and its durable log (README.md)."""

from broker.groups.coordinator import GroupCoordinator

__all__ = ["GroupCoordinator"]
