"""Wiring TieredStorage into the running Broker (broker/app.py calls these two functions).

    attach_tiered_storage(broker)         after the logs are open: builds and returns the
                                          TieredStorage (the node keeps it), adds
                                          /v1/tiered/status, /v1/tiered/remote-topic and
                                          the /metrics collector, schedules its tick on the node's ticker
    initial_offset_for(broker, topic, p)  the start offset of a partition log about to be
                                          created: after the bucket's last offset when the
                                          topic asks for shoal.remote.recovery, else 0
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker import limits
from broker.ids import Offset
from tiered.service import TieredStorage
from tiered.settings import TopicTieredSettings, recovery_requested, resolve_topic_settings

_NOT_TIERED = TopicTieredSettings(remote_storage_enable=False, retention_bytes=-1, retention_ms=-1,
                                  local_retention_bytes=-1, local_retention_ms=-1)


async def attach_tiered_storage(broker: Any) -> TieredStorage | None:
    config = broker.config
    if config.cloud_storage is None:
        return None

    def settings_for(topic: str) -> TopicTieredSettings:
        entry = broker.topics.get(topic) if broker.topics is not None else None
        if entry is None:
            return _NOT_TIERED
        return resolve_topic_settings(config, topic, entry.configs, entry.partitions)

    async def open_recovered_log(topic: str, partition: int, start_offset: Offset):
        return await broker.open_partition_log(topic, partition)  # opened at initial_offset_for

    tiered = TieredStorage(config, logs=broker.archivable_logs,
                           settings_for=settings_for, clock=broker.clock, create_log=open_recovered_log)
    await tiered.start()
    _add_admin_endpoints(broker, tiered)
    broker.ticker.every("tiered", limits.tiered_tick_interval_ms, tiered.tick)
    return tiered


async def detach_tiered_storage(broker: Any) -> None:
    if broker.tiered is not None:
        await broker.tiered.close()


async def initial_offset_for(broker: Any, topic: str, partition: int) -> Offset:
    entry = broker.topics.get(topic) if broker.topics is not None else None
    if broker.tiered is None or entry is None or not recovery_requested(entry.configs):
        return Offset(0)
    return await broker.tiered.recovery_start_offset(topic, partition)


def _add_admin_endpoints(broker: Any, tiered: TieredStorage) -> None:
    probe = getattr(broker, "probe", None)
    if probe is not None and hasattr(probe, "add_collector"):
        probe.add_collector(tiered.collector)
    admin = getattr(broker, "admin_http", None)
    if admin is None:
        return
    admin.add_json_endpoint("/v1/tiered/status", lambda request: tiered.status())

    async def remote_topic(request: web.Request):
        name = request.query.get("name", "")
        count = await tiered.remote_partition_count(name) if name else None
        if count is None:
            raise web.HTTPNotFound(text=f"no topic manifest for {name!r} in {tiered.store.description}")
        return {"topic": name, "partition_count": count}

    admin.add_json_endpoint("/v1/tiered/remote-topic", remote_topic)
