"""Produce (0), v3-v9: validate each partition's record batch without decoding records,
check idempotent sequences, append, answer with the assigned offsets.

Per partition, the way Kafka 3.x does it:
- internal topics (__consumer_offsets) are written by the broker only (INVALID_TOPIC_EXCEPTION 17);
- exactly one magic-v2 batch (Kafka's ProduceRequest.validateRecords: anything else,
  including magic 0/1 message sets, is INVALID_RECORD 87);
- header, lengths and CRC32C (CORRUPT_MESSAGE 2), max.message.bytes (MESSAGE_TOO_LARGE 10),
  client batch rules (INVALID_RECORD 87), message.timestamp.difference.max.ms
  (INVALID_TIMESTAMP 32), acks=all with min.insync.replicas above the replicas in sync
  (NOT_ENOUGH_REPLICAS 19);
- records are only touched when the topic requires it: compression.type other than
  `producer` and different from the batch's codec (decompress + recompress), or
  message.timestamp.type=LogAppendTime (maxTimestamp set to the append time, returned as
  log_append_time);
- the partition (broker/partition.py) does the rest: min.insync.replicas, idempotent
  batches through broker.producer_state (duplicates get their original offsets back, gaps OUT_OF_ORDER_SEQUENCE_NUMBER 45, stale epochs INVALID_PRODUCER_EPOCH 47).

Transactions are not supported: a transactional produce (transactional_id set, or a
batch with the transactional bit) gets UNSUPPORTED_VERSION (35), the code Shoal answers
every transaction API with. The Java producer treats UnsupportedVersionException as fatal
for a transactional producer (TransactionManager), so the application learns at once that
this broker cannot do transactions instead of retrying or being told it lacks an ACL
(TRANSACTIONAL_ID_AUTHORIZATION_FAILED would send operators hunting for permissions).

acks=0 requests get no response at all (Kafka), after the append is done; when a partition
failed, the connection is closed instead, as Kafka does, so the client refreshes metadata.

Pipelining: `start()` is the ordered phase the server runs before the connection's next
request (validation, sequence check, append); the wait for fsync happens afterwards, so
the next requests of the connection append while this one waits and share its fsync.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from broker import limits
from broker.handlers.context import CLOSE_CONNECTION, NO_RESPONSE, RequestContext
from broker.invariant import InvariantViolation
from broker.partition import ProduceRefused
from broker.protocol.kio_build import NO_THROTTLE, build, milliseconds, nested
from broker.protocol.messages import response_type
from broker.records import (
    BatchHeader, Compression, RecordBatchError, UnsupportedMessageFormat, check_client_batch_rules,
    read_header, recompress_batch, set_log_append_time, validate_batch)
from broker.storage.api import KafkaStorageError

API_KEY = 0
MIN_VERSION = 3
MAX_VERSION = 9

log = logging.getLogger("shoal.produce")

_VALID_ACKS = (-1, 0, 1)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


@dataclass(frozen=True)
class PartitionOutcome:
    error: ErrorCode = ErrorCode.none
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    message: str | None = None


async def handle(context: RequestContext, request: Any) -> Any:
    """The whole request: the ordered phase, then the wait for durability."""
    return await (await start(context, request))


async def start(context: RequestContext, request: Any) -> asyncio.Future:
    """The ordered phase (broker/server.py runs one connection's ordered phases one after
    another): validate and append every partition's batch; returns the future of the
    response, which resolves once the appends are durable (fsync mode) or at once.

    Returns only after each partition has made its append call or finished without one.
    The log assigns the offsets and writes the batch before its first await (storage
    contract), and this coroutine can only resume in a later step of the event loop than
    the one that marked the last append (asyncio runs a future's done callbacks through
    call_soon), so every append of this request is done before the connection starts its
    next request: offsets and idempotent sequence checks follow request order."""
    loop = asyncio.get_running_loop()
    batches = [(topic_data.name, partition_data.index, partition_data.records)
               for topic_data in request.topic_data for partition_data in topic_data.partition_data]
    appends_made = [loop.create_future() for _ in batches]
    response = loop.create_task(_produce(context, request, batches, appends_made))
    waiting: list[asyncio.Future] = [response]
    if appends_made:
        waiting.append(appends_made[0] if len(appends_made) == 1 else asyncio.gather(*appends_made))
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    return response


async def _produce(context: RequestContext, request: Any, batches: list[tuple[str, int, bytes | None]],
                   appends_made: list[asyncio.Future]) -> Any:
    work = [_produce_partition(context, request, topic, index, records, append_made)
            for (topic, index, records), append_made in zip(batches, appends_made)]
    # Every partition at once, so one group-commit fsync covers them all.
    outcomes = iter([await work[0]] if len(work) == 1 else await asyncio.gather(*work))
    topics = [(topic_data.name, [(partition_data.index, next(outcomes))
                                 for partition_data in topic_data.partition_data])
              for topic_data in request.topic_data]
    if request.acks == 0:
        failed = any(outcome.error != ErrorCode.none for _, partitions in topics for _, outcome in partitions)
        return CLOSE_CONNECTION if failed else NO_RESPONSE
    return _response(context.api_version, topics)


async def _produce_partition(context: RequestContext, request: Any, topic: str, partition: int,
                             records: bytes | None, append_made: asyncio.Future) -> PartitionOutcome:
    try:
        return await _append_partition(context, request, topic, partition, records, append_made)
    except ProduceRefused as refused:
        return PartitionOutcome(refused.error, message=str(refused))
    except RecordBatchError as error:
        return PartitionOutcome(ErrorCode(error.error_code), message=str(error))
    except KafkaStorageError as error:
        log.error("produce to %s/%d failed: %s", topic, partition, error)
        return PartitionOutcome(ErrorCode.kafka_storage_error, message=str(error))
    except InvariantViolation:
        raise
    except OSError as error:
        log.exception("produce to %s/%d failed", topic, partition)
        return PartitionOutcome(ErrorCode.kafka_storage_error, message=str(error))
    finally:
        _mark_append_made(append_made)  # refused before appending: nothing left to order


def _mark_append_made(append_made: asyncio.Future) -> None:
    """The partition's ordered work is done: call right before awaiting the log's append
    (or the flush of a duplicate), with no await in between."""
    if not append_made.done():
        append_made.set_result(None)


async def _append_partition(context: RequestContext, request: Any, topic: str, partition: int,
                            records: bytes | None, append_made: asyncio.Future) -> PartitionOutcome:
    broker = context.broker
    if request.acks not in _VALID_ACKS:
        raise ProduceRefused(ErrorCode.invalid_required_acks, f"acks must be -1, 0 or 1, got {request.acks}")
    if request.transactional_id is not None:
        raise ProduceRefused(ErrorCode.unsupported_version, "transactions are not supported by Shoal")
    target = await broker.partitions.wait_for(topic, partition)
    if target is None:
        raise ProduceRefused(ErrorCode.unknown_topic_or_partition,
                             f"this server does not host {topic}-{partition}")
    target.check_produce(request.acks)
    configs = target.configs
    batch, header = _validated_batch(records, target.log_config.max_message_bytes)
    _check_timestamps(header, configs, broker.clock.now_ms())
    batch, header, log_append_time_ms = _apply_topic_format(batch, header, configs, broker.clock.now_ms())
    timeout_ms = min(max(milliseconds(request.timeout), 0) or limits.produce_commit_wait_ms_default,
                     limits.produce_commit_wait_ms_default)
    result = await target.produce(batch, header, log_append_time_ms=log_append_time_ms,
                                  on_ordered=lambda: _mark_append_made(append_made), acks=request.acks,
                                  timeout_ms=timeout_ms)
    broker.probe.produce_bytes.labels(topic).inc(header.size)
    return PartitionOutcome(base_offset=result.base_offset, log_append_time_ms=result.log_append_time_ms,
                            log_start_offset=result.log_start_offset)


def _validated_batch(records: bytes | None, max_message_bytes: int) -> tuple[bytearray, BatchHeader]:
    """The partition's one batch as a writable copy, checked like Kafka 3.x does."""
    if not records:
        raise ProduceRefused(ErrorCode.invalid_record,
                             "produce requests v3+ must carry exactly one record batch per partition")
    batch = bytearray(records)
    try:
        header = validate_batch(batch, max_batch_bytes=max_message_bytes)
    except UnsupportedMessageFormat as error:
        raise ProduceRefused(ErrorCode.invalid_record,
                             f"produce requests v3+ only take record batches with magic 2 ({error})") from None
    if header.size != len(batch):
        raise ProduceRefused(ErrorCode.invalid_record,
                             "produce requests v3+ must carry exactly one record batch per partition")
    check_client_batch_rules(header)
    if header.is_transactional:
        raise ProduceRefused(ErrorCode.unsupported_version, "transactions are not supported by Shoal")
    return batch, header


def _check_timestamps(header: BatchHeader, configs: dict[str, str], now_ms: int) -> None:
    """message.timestamp.difference.max.ms (CreateTime topics), from the batch header's
    first and largest timestamps (records are not decoded)."""
    limit = configs.get("message.timestamp.difference.max.ms")
    if limit is None or configs.get("message.timestamp.type") == "LogAppendTime":
        return
    for timestamp in (header.base_timestamp, header.max_timestamp):
        if timestamp >= 0 and abs(now_ms - timestamp) > int(limit):
            raise ProduceRefused(ErrorCode.invalid_timestamp,
                                 f"timestamp {timestamp} is more than {limit} ms away from the broker's {now_ms}")


def _apply_topic_format(batch: bytearray, header: BatchHeader, configs: dict[str, str],
                        now_ms: int) -> tuple[bytearray, BatchHeader, int | None]:
    """Recompress when the topic's compression.type says so; set LogAppendTime."""
    target = Compression.from_topic_config(configs.get("compression.type", "producer"))
    if target is not None and target != header.compression:
        batch = recompress_batch(batch, target)
        header = read_header(batch)
    if configs.get("message.timestamp.type") != "LogAppendTime":
        return batch, header, None
    set_log_append_time(batch, now_ms)
    return batch, read_header(batch), now_ms


def _response(version: int, topics: list[tuple[str, list[tuple[int, PartitionOutcome]]]]) -> Any:
    response_class = response_type(API_KEY, version)
    topic_class = nested(response_class, "TopicProduceResponse")
    partition_class = nested(response_class, "PartitionProduceResponse")
    return build(response_class, throttle_time=NO_THROTTLE, responses=tuple(
        build(topic_class, name=name, partition_responses=tuple(
            build(partition_class,
                  index=index,
                  error_code=outcome.error,
                  base_offset=outcome.base_offset,
                  log_append_time=_timestamp(outcome.log_append_time_ms),
                  log_start_offset=outcome.log_start_offset,
                  record_errors=(),
                  error_message=outcome.message)
            for index, outcome in partitions))
        for name, partitions in topics))


def _timestamp(milliseconds: int) -> datetime.datetime | None:
    if milliseconds < 0:
        return None  # written as -1
    return _EPOCH + datetime.timedelta(milliseconds=milliseconds)
