"""DescribeLogDirs (35): the node's one log directory (<data_dir>/topics) with each
partition's local size (the hot tier only, as Kafka reports it for KIP-405 topics) and
the volume's total and usable bytes (v4+)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterable

from kio.schema.errors import ErrorCode

from broker.handlers.admin_support import NO_THROTTLE, build, response_module
from broker.handlers.context import RequestContext
from broker.topic_table import Topic

API_KEY = 35
MIN_VERSION = 1  # kio (Kafka 4 schemas) starts at 1
# v5 exists (Kafka 4.3), but kafka-python 3.x reads DescribeLogDirs v5 as "broker 4.3" and
# would then assume every API of that release.
MAX_VERSION = 4


def log_directory(broker: Any) -> Path:
    return (broker.config.data_dir / "topics").absolute()


async def handle(context: RequestContext, request: Any) -> Any:
    module = response_module(API_KEY, context.api_version)
    broker = context.broker
    directory = log_directory(broker)
    topics = tuple(
        build(module.DescribeLogDirsTopic, name=topic.name,
              partitions=tuple(_partition(module, broker, topic, partition) for partition in partitions))
        for topic, partitions in _requested(broker, request.topics)
    )
    total_bytes, usable_bytes = _volume(directory)
    result = build(module.DescribeLogDirsResult, error_code=ErrorCode.none, log_dir=str(directory),
                   topics=topics, total_bytes=total_bytes, usable_bytes=usable_bytes)
    return build(module.DescribeLogDirsResponse, throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                 results=(result,))


def _requested(broker: Any, requested: Any) -> Iterable[tuple[Topic, list[int]]]:
    """(topic, partitions) for every existing partition asked for; null asks for all.
    Topics and partitions that don't exist are left out, as Kafka does."""
    if requested is None:
        return [(topic, list(range(topic.partitions))) for topic in broker.topics.topics()]
    selected = []
    for entry in requested:
        topic = broker.topics.get(entry.topic)
        if topic is None:
            continue
        partitions = sorted({int(partition) for partition in entry.partitions if 0 <= partition < topic.partitions})
        if partitions:
            selected.append((topic, partitions))
    return selected


def _partition(module: Any, broker: Any, topic: Topic, partition: int) -> Any:
    size_bytes, lag = 0, 0
    partition_log = broker.partition_log(topic.name, partition)
    if partition_log is not None:
        size_bytes = sum(segment.size_bytes for segment in partition_log.segments())
        lag = int(partition_log.log_end_offset) - int(partition_log.high_watermark)
    return build(module.DescribeLogDirsPartition, partition_index=partition, partition_size=size_bytes,
                 offset_lag=lag, is_future_key=False)


def _volume(directory: Path) -> tuple[int, int]:
    """(total, usable) bytes of the volume holding the directory; -1 when unknown."""
    probe = directory if directory.exists() else directory.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return -1, -1
    return usage.total, usage.free
