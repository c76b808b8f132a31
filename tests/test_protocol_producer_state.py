"""Idempotent producer state: sequence checks, dedup window, epochs, id allocation that
survives restarts, and the rebuild from stored batch headers."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from broker import limits
from broker.producer_state import (
    PartitionProducers, ProducerIdAllocator, ProducerStateManager, follows, last_sequence_of)
from broker.storage.api import BatchHeaderInfo

PRODUCER = 1000


def append(state: PartitionProducers, epoch: int, sequence: int, count: int, base_offset: int) -> None:
    verdict = state.check(PRODUCER, epoch, sequence, count)
    assert verdict.should_append, verdict
    state.record(PRODUCER, epoch, sequence, count, base_offset, base_offset + count - 1, -1, 0)


def test_in_order_batches_append_and_retries_of_the_last_five_are_duplicates():
    state = PartitionProducers("t-0")
    for batch in range(7):
        append(state, 0, batch * 2, 2, batch * 2)
    for batch in range(2, 7):  # the last five are remembered with their offsets
        verdict = state.check(PRODUCER, 0, batch * 2, 2)
        assert verdict.duplicate is not None and verdict.duplicate.base_offset == batch * 2
    too_old = state.check(PRODUCER, 0, 2, 2)  # sixth from the end: forgotten, out of order
    assert too_old.error == ErrorCode.out_of_order_sequence_number


def test_gaps_and_replays_are_out_of_order():
    state = PartitionProducers("t-0")
    append(state, 0, 0, 3, 0)
    assert state.check(PRODUCER, 0, 4, 1).error == ErrorCode.out_of_order_sequence_number
    assert state.check(PRODUCER, 0, 1, 2).error == ErrorCode.out_of_order_sequence_number  # overlaps
    assert state.check(PRODUCER, 0, 3, 1).should_append


def test_epochs():
    state = PartitionProducers("t-0")
    append(state, 2, 0, 1, 0)
    assert state.check(PRODUCER, 1, 1, 1).error == ErrorCode.invalid_producer_epoch
    assert state.check(PRODUCER, 3, 5, 1).error == ErrorCode.out_of_order_sequence_number
    append(state, 3, 0, 1, 1)
    assert state.check(PRODUCER, 3, 0, 1).duplicate is not None
    assert state.check(PRODUCER, 2, 0, 1).error == ErrorCode.invalid_producer_epoch


def test_unknown_producers_start_anywhere_and_sequences_wrap():
    state = PartitionProducers("t-0")
    top = 2**31 - 1
    append(state, 0, top - 1, 2, 0)  # unknown producer: accepted at any sequence (KIP-360)
    assert last_sequence_of(top - 1, 2) == top
    assert follows(top, 0)
    append(state, 0, 0, 1, 2)


def test_restore_undoes_a_failed_append():
    state = PartitionProducers("t-0")
    append(state, 0, 0, 1, 0)
    previous = state.record(PRODUCER, 1, 0, 1, 1, 1, -1, 0)  # epoch bump, then the append fails
    state.restore(PRODUCER, previous)
    assert state.entry(PRODUCER).producer_epoch == 0
    assert state.check(PRODUCER, 0, 1, 1).should_append
    new = state.record(PRODUCER + 1, 0, 0, 1, 2, 2, -1, 0)
    state.restore(PRODUCER + 1, new)
    assert state.entry(PRODUCER + 1) is None


def test_expiry_and_bounded_size(monkeypatch):
    state = PartitionProducers("t-0")
    state.record(1, 0, 0, 1, 0, 0, -1, now_ms=0)
    state.record(2, 0, 0, 1, 1, 1, -1, now_ms=5_000)
    assert state.expire(now_ms=limits.producer_state_expiration_ms + 1) == 1
    assert state.entry(1) is None and state.entry(2) is not None
    monkeypatch.setattr(limits, "producers_per_partition_max", 3)
    for producer_id in range(10, 20):
        state.record(producer_id, 0, 0, 1, producer_id, producer_id, -1, 0)
    assert len(state) == 3 and state.entry(19) is not None


def test_producer_ids_are_never_reused_across_restarts(tmp_path):
    allocator = ProducerIdAllocator(tmp_path, block_size=10)
    first = [allocator.allocate() for _ in range(3)]
    again = ProducerIdAllocator(tmp_path, block_size=10)  # restart (even after kill -9)
    second = [again.allocate() for _ in range(12)]
    assert first == [0, 1, 2]
    assert min(second) >= 10 and len(set(first + second)) == 15
    third = ProducerIdAllocator(tmp_path, block_size=10).allocate()
    assert third >= 30


def test_rebuild_from_batch_headers(tmp_path):
    headers = [
        BatchHeaderInfo(0, 1, 100, 7, 0, 0, 2, False, False, 0, 100),
        BatchHeaderInfo(2, 2, 100, -1, -1, -1, 1, False, False, 100, 80),  # not idempotent
        BatchHeaderInfo(3, 5, 100, 7, 0, 2, 3, False, False, 180, 120),
        BatchHeaderInfo(6, 6, 100, 5_000, 0, 0, 1, False, True, 300, 70),  # control batch: skipped
    ]
    manager = ProducerStateManager(tmp_path)
    state = manager.rebuild("t", 0, headers, now_ms=1_000)
    duplicate = state.check(7, 0, 2, 3).duplicate
    assert duplicate is not None and (duplicate.base_offset, duplicate.last_offset) == (3, 5)
    assert state.check(7, 0, 5, 1).should_append
    assert state.entry(5_000) is None
    assert manager.allocator.allocate() > 7


def test_dedup_and_producer_ids_survive_kill_9(broker):
    """After kill -9 and restart, a retry of an acknowledged batch still gets its original
    offsets (state rebuilt from the log), new producer ids are fresh, the cluster id stays."""
    from tests.test_protocol_broker import (
        create, decoded_values, fetch, init_producer_id_request, metadata_request, produce, records)
    from tests.wire_client import WireClient

    with WireClient(broker.kafka_port) as client:
        create(client, "restart")
        cluster_id = client.call(metadata_request(12, None)).cluster_id
        first = client.call(init_producer_id_request(4))
        batch = records(4, producer_id=first.producer_id, producer_epoch=0, base_sequence=0)
        assert produce(client, "restart", batch).base_offset == 0
    broker.kill()
    broker.start()
    with WireClient(broker.kafka_port) as client:
        retry = produce(client, "restart", batch)
        assert (retry.error_code, retry.base_offset) == (ErrorCode.none, 0)
        following = records(1, producer_id=first.producer_id, producer_epoch=0, base_sequence=4)
        assert produce(client, "restart", following).base_offset == 4
        gap = records(1, producer_id=first.producer_id, producer_epoch=0, base_sequence=9)
        assert produce(client, "restart", gap).error_code == ErrorCode.out_of_order_sequence_number
        assert len(decoded_values(fetch(client, "restart", 0)[1].records)) == 5
        assert client.call(init_producer_id_request(4)).producer_id > first.producer_id
        assert client.call(metadata_request(12, None)).cluster_id == cluster_id  # persisted in the data dir
