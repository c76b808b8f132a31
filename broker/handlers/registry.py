"""The one list of Kafka APIs Shoal serves, with version ranges.

ApiVersions answers from HANDLERS; the server dispatches through it. A module appears
here only when its handler serves every version in its range (never advertise an API you
cannot serve: clients report "broker too old" at first use). Node-to-node APIs (Vote,
BeginQuorumEpoch) are served but not advertised to clients (`ADVERTISED = False`), as
Kafka brokers keep their KRaft APIs off a client's ApiVersions."""

from __future__ import annotations

import importlib
from types import ModuleType

# Module names under broker.handlers. Missing modules are skipped at import time so
# the broker runs while handlers are being added; tests check the full list is present.
HANDLER_MODULES = (
    "api_versions",
    "metadata",
    "produce",
    "fetch",
    "list_offsets",
    "offset_for_leader_epoch",
    "init_producer_id",
    "create_topics",
    "delete_topics",
    "create_partitions",
    "describe_configs",
    "alter_configs",
    "incremental_alter_configs",
    "describe_cluster",
    "describe_log_dirs",
    "find_coordinator",
    "join_group",
    "sync_group",
    "heartbeat",
    "leave_group",
    "offset_commit",
    "offset_fetch",
    "list_groups",
    "describe_groups",
    "delete_groups",
    "offset_delete",
    "delete_records",
    "vote",
    "begin_quorum_epoch",
)


def _load() -> dict[int, ModuleType]:
    handlers: dict[int, ModuleType] = {}
    for name in HANDLER_MODULES:
        try:
            module = importlib.import_module(f"broker.handlers.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"broker.handlers.{name}":
                continue
            raise
        handlers[module.API_KEY] = module
    return handlers


HANDLERS: dict[int, ModuleType] = _load()


def handler_for(api_key: int, api_version: int) -> ModuleType | None:
    module = HANDLERS.get(api_key)
    if module is None or not module.MIN_VERSION <= api_version <= module.MAX_VERSION:
        return None
    return module


def supported_versions() -> list[tuple[int, int, int]]:
    """(api_key, min_version, max_version) of the APIs advertised to clients, by key."""
    return sorted((key, module.MIN_VERSION, module.MAX_VERSION) for key, module in HANDLERS.items()
                  if getattr(module, "ADVERTISED", True))
