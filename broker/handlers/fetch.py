"""Fetch (1), v4-v12: long-poll reads of whole record batches, sent zero-copy.

- Long poll: answered as soon as min_bytes are available (a log's append listener wakes
  the waiting fetch through broker.fetch_waiters), at the latest after max_wait_ms
  (capped by limits.fetch_wait_ms_max), at once when a partition has an error.
- Byte limits like Kafka (KIP-74): partitions are read in request order, each up to
  min(partition_max_bytes, what is left of max_bytes); until some partition returned
  data, the first batch is returned whole even when it is larger than both limits.
- Isolation: no transactions exist, so the last stable offset is the high watermark for
  both levels; read_committed gets an empty aborted-transactions list, read_uncommitted
  a null one (as Kafka does).
- Fetch sessions (KIP-227, v7+): Shoal runs session-less. A full fetch (epoch 0 or -1,
  any session id) is answered with session_id 0, which tells the client no session was
  created, so it keeps sending full fetches; an incremental fetch (epoch > 0) names a
  session Shoal never created and gets FETCH_SESSION_ID_NOT_FOUND (70).
- Reads below the local log start come from the cold tier: the partition decides
  (broker/partition.py, `Partition.reads_from_cold_tier`).
- Log divergence (KIP-320, v12+): a partition whose request names a last fetched epoch
  (>= 0) is checked against the leader epoch cache first (`Partition.diverging_epoch`,
  Kafka's rules): a diverging fetcher gets no records, error NONE and DivergingEpoch
  {epoch, end offset} to truncate to; an epoch whose end is unknown, or an offset below the
  log start, gets OFFSET_OUT_OF_RANGE. Either answers the fetch at once, like an error.
- The response is hand-encoded (broker.protocol.fetch_response) around storage FileRegions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kio.schema.errors import ErrorCode

from broker import limits
from broker.handlers.context import EncodedResponse, RequestContext
from broker.ids import NO_EPOCH
from broker.invariant import InvariantViolation
from broker.protocol.fetch_response import (
    EpochEndOffset, LeaderIdAndEpoch, PartitionResponse, TopicResponse, encode_fetch_response)
from broker.protocol.kio_build import milliseconds
from broker.storage.api import KafkaStorageError, OffsetOutOfRange

API_KEY = 1
MIN_VERSION = 4
MAX_VERSION = 12

READ_COMMITTED = 1
CONSUMER_REPLICA_ID = -1  # Fetch.replica_id of a consumer; a follower sends its node id
_LEADER_MOVED = (ErrorCode.not_leader_or_follower, ErrorCode.fenced_leader_epoch)
FINAL_EPOCH = -1
INITIAL_EPOCH = 0

log = logging.getLogger("shoal.fetch")


@dataclass
class _Budget:
    """What is left of the response's max_bytes, and whether the first-batch rule holds."""

    bytes_left: int
    first_batch_rule: bool = True

    def spend(self, size: int) -> None:
        if size > 0:
            self.first_batch_rule = False
        self.bytes_left = max(0, self.bytes_left - size)


async def handle(context: RequestContext, request: Any) -> Any:
    version = context.api_version
    session_error = _session_error(version, request)
    if session_error is not None:
        return EncodedResponse(encode_fetch_response(version, [], error_code=session_error))
    broker = context.broker
    clock = broker.clock
    max_wait_ms = max(0, min(milliseconds(request.max_wait), limits.fetch_wait_ms_max))
    deadline_ms = clock.monotonic_ms() + max_wait_ms
    wanted = [(topic.topic, partition.partition) for topic in request.topics for partition in topic.partitions]
    waiter = broker.fetch_waiters.register(wanted) if max_wait_ms > 0 and wanted else None
    try:
        while True:
            topics, total_bytes, answer_now = await _read_all(context, request)
            if waiter is None or total_bytes >= request.min_bytes or answer_now:
                break
            remaining_ms = deadline_ms - clock.monotonic_ms()
            if remaining_ms <= 0:
                break
            await waiter.wait(remaining_ms)  # woken by new data or timed out: read again
    finally:
        if waiter is not None:
            waiter.close()
    for topic in topics:
        served = sum(partition.records_size for partition in topic.partitions)
        if served:
            broker.probe.fetch_bytes.labels(topic.topic).inc(served)
    return EncodedResponse(encode_fetch_response(version, topics))


def _session_error(version: int, request: Any) -> int | None:
    """KIP-227 without sessions: full fetches are fine, incremental ones name a session
    that does not exist."""
    if version < 7 or request.session_epoch in (INITIAL_EPOCH, FINAL_EPOCH):
        return None
    return ErrorCode.fetch_session_id_not_found.value


async def _read_all(context: RequestContext, request: Any) -> tuple[list[TopicResponse], int, bool]:
    """(topics, bytes of records, whether a partition has an error or a divergence)."""
    budget = _Budget(min(max(request.max_bytes, 0), limits.fetch_response_bytes_max))
    isolation_level = getattr(request, "isolation_level", 0)
    topics: list[TopicResponse] = []
    total_bytes = 0
    answer_now = False
    for topic_request in request.topics:
        partitions = []
        for partition_request in topic_request.partitions:
            response = await _read_partition(context, topic_request.topic, partition_request, budget, isolation_level,
                                             getattr(request, "replica_id", CONSUMER_REPLICA_ID))
            size = response.records_size
            budget.spend(size)
            total_bytes += size
            answer_now = answer_now or response.error_code != 0 or response.diverging_epoch is not None
            partitions.append(response)
        topics.append(TopicResponse(topic_request.topic, partitions))
    return topics, total_bytes, answer_now


async def _read_partition(context: RequestContext, topic: str, partition_request: Any, budget: _Budget,
                          isolation_level: int, replica_id: int) -> PartitionResponse:
    broker = context.broker
    index = partition_request.partition
    partition = await broker.partitions.wait_for(topic, index)
    if partition is None:
        return PartitionResponse(index, ErrorCode.unknown_topic_or_partition.value)
    from_follower = replica_id >= 0
    error = (partition.follower_fetch_error(replica_id) if from_follower else partition.leadership_error()) \
        or partition.epoch_error(getattr(partition_request, "current_leader_epoch", -1))
    last_stable_offset = int(partition.last_stable_offset)
    response = PartitionResponse(
        index, high_watermark=int(partition.high_watermark), last_stable_offset=last_stable_offset,
        log_start_offset=int(partition.log_start_offset),
        aborted_transactions=[] if isolation_level == READ_COMMITTED else None)
    if error is not None:
        response.error_code = error.value
        if context.api_version >= 12 and error in _LEADER_MOVED:
            response.current_leader = LeaderIdAndEpoch(*partition.leader_hint())
        return response
    max_bytes = min(partition_request.partition_max_bytes, budget.bytes_left)
    try:
        diverging = partition.diverging_epoch(getattr(partition_request, "last_fetched_epoch", NO_EPOCH),
                                              partition_request.fetch_offset)
        if diverging is not None:
            response.diverging_epoch = EpochEndOffset(*diverging)
        elif from_follower:
            # The follower's fetch offset is its durable log end: progress for the commit.
            broker.replication.replica_fetched(topic, index, replica_id, partition_request.fetch_offset)
            response.high_watermark = int(partition.high_watermark)
            response.records = await partition.read(partition_request.fetch_offset, max(max_bytes, 1),
                                                    upper_bound=int(partition.log_end_offset),
                                                    min_one_batch=True)
        elif max_bytes > 0 or budget.first_batch_rule:
            response.records = await partition.read(partition_request.fetch_offset, max_bytes,
                                                    upper_bound=last_stable_offset,
                                                    min_one_batch=budget.first_batch_rule)
    except OffsetOutOfRange:
        response.error_code = ErrorCode.offset_out_of_range.value
    except KafkaStorageError as error:
        log.error("fetch from %s/%d failed: %s", topic, index, error)
        response.error_code = ErrorCode.kafka_storage_error.value
    except InvariantViolation:
        raise
    except Exception:  # e.g. the cold tier is unreachable: a retriable error, not a dropped connection
        log.exception("fetch from %s/%d at offset %d failed", topic, index, partition_request.fetch_offset)
        response.error_code = ErrorCode.kafka_storage_error.value
    return response
