"""KIP-320 at the wire: OffsetForLeaderEpoch (23) and Fetch v12's DivergingEpoch against
real `shoal start` processes, plus the Partition rules behind them on a stub log.

One node never changes its leader epoch, so the multi-epoch tests make one: produce, stop
the node, raise the partition's epoch in <data_dir>/controller/topics.json (what a leader
change does to the topic table; no operator tool does it), start again and produce more.
The log then holds batches of two epochs, and its leader epoch cache two entries."""

from __future__ import annotations

import json
import struct
import time
import uuid

import pytest
from kio.schema.errors import ErrorCode

from broker.ids import Offset
from broker.partition import ColdTier, Partition
from broker.protocol.kio_build import build
from broker.storage.api import EpochEntry, OffsetOutOfRange
from broker.storage.leader_epoch_cache import LeaderEpochCache
from broker.topic_table import Topic
from tests.support import module_broker, running_broker
from tests.test_protocol_broker import create, decoded_values, fetch, metadata_request, produce, records
from tests.wire_client import WireClient, request_class

OFFSET_FOR_LEADER_EPOCH = 23
API_VERSIONS = 18

broker = module_broker("leader-epoch")


@pytest.fixture
def client(broker):
    with WireClient(broker.kafka_port) as connection:
        yield connection


def end_offset_request(version: int, topic: str, leader_epoch: int, *, partition: int = 0,
                       current_leader_epoch: int = -1):
    partition_class = request_class(OFFSET_FOR_LEADER_EPOCH, version, "OffsetForLeaderPartition")
    topic_class = request_class(OFFSET_FOR_LEADER_EPOCH, version, "OffsetForLeaderTopic")
    return build(request_class(OFFSET_FOR_LEADER_EPOCH, version), replica_id=-1, topics=(
        build(topic_class, topic=topic, partitions=(
            build(partition_class, partition=partition, current_leader_epoch=current_leader_epoch,
                  leader_epoch=leader_epoch),)),))


def end_offset(client: WireClient, topic: str, leader_epoch: int, version: int = 4, **options):
    """(error, leader epoch, end offset) of one partition."""
    response = client.call(end_offset_request(version, topic, leader_epoch, **options))
    assert [result.topic for result in response.topics] == [topic]
    answer = response.topics[0].partitions[0]
    return answer.error_code, answer.leader_epoch, answer.end_offset


def batch_epochs(data: bytes) -> list[tuple[int, int]]:
    """(base offset, partition leader epoch) of each batch in fetched record bytes."""
    batches = []
    position = 0
    while position < len(data):
        base_offset, length, epoch = struct.unpack_from(">qii", data, position)
        batches.append((base_offset, epoch))
        position += 12 + length
    return batches


# --- one node, one epoch (0) -------------------------------------------------------------------

def test_api_versions_advertises_offset_for_leader_epoch_2_to_4(client):
    response = client.call(build(request_class(API_VERSIONS, 3), client_software_name="wire-test",
                                 client_software_version="1"))
    ranges = {int(key.api_key): (key.min_version, key.max_version) for key in response.api_keys}
    assert ranges[OFFSET_FOR_LEADER_EPOCH] == (2, 4)


@pytest.mark.parametrize("version", range(2, 5))
def test_current_epoch_ends_at_the_log_end(client, version):
    topic = f"epoch-end-v{version}"
    create(client, topic)
    produce(client, topic, records(3))
    produce(client, topic, records(2))
    assert end_offset(client, topic, 0, version) == (ErrorCode.none, 0, 5)
    assert end_offset(client, topic, 0, version, current_leader_epoch=0) == (ErrorCode.none, 0, 5)


def test_epoch_above_ours_and_no_epoch_answer_undefined(client):
    create(client, "epoch-above")
    produce(client, "epoch-above", records(2))
    assert end_offset(client, "epoch-above", 1) == (ErrorCode.none, -1, -1)
    assert end_offset(client, "epoch-above", -1) == (ErrorCode.none, -1, -1)


def test_empty_partition_answers_our_epoch_at_the_log_end(client):
    """Kafka's leader holds its epoch from election on, before any batch: (0, 0), never
    (-1, -1), which clients read as truncation."""
    create(client, "epoch-empty")
    assert end_offset(client, "epoch-empty", 0) == (ErrorCode.none, 0, 0)


def test_current_leader_epoch_newer_than_ours_is_unknown(client):
    create(client, "epoch-unknown")
    assert end_offset(client, "epoch-unknown", 0, current_leader_epoch=1) == (ErrorCode.unknown_leader_epoch, -1, -1)


def test_unknown_topic_and_partition(client):
    assert end_offset(client, "no-such-epoch-topic", 0) == (ErrorCode.unknown_topic_or_partition, -1, -1)
    create(client, "epoch-one-partition")
    assert end_offset(client, "epoch-one-partition", 0, partition=7) == (
        ErrorCode.unknown_topic_or_partition, -1, -1)


def test_several_topics_and_partitions_in_one_request(client):
    create(client, "epoch-many")
    produce(client, "epoch-many", records(4))
    partition_class = request_class(OFFSET_FOR_LEADER_EPOCH, 3, "OffsetForLeaderPartition")
    topic_class = request_class(OFFSET_FOR_LEADER_EPOCH, 3, "OffsetForLeaderTopic")
    request = build(request_class(OFFSET_FOR_LEADER_EPOCH, 3), replica_id=-1, topics=(
        build(topic_class, topic="epoch-many", partitions=tuple(
            build(partition_class, partition=0, current_leader_epoch=-1, leader_epoch=epoch) for epoch in (0, 3))),
        build(topic_class, topic="no-such-epoch-topic-2", partitions=(
            build(partition_class, partition=0, current_leader_epoch=-1, leader_epoch=0),))))
    response = client.call(request)
    answers = [(result.topic, answer.partition, answer.error_code, answer.leader_epoch, answer.end_offset)
               for result in response.topics for answer in result.partitions]
    assert answers == [("epoch-many", 0, ErrorCode.none, 0, 4), ("epoch-many", 0, ErrorCode.none, -1, -1),
                       ("no-such-epoch-topic-2", 0, ErrorCode.unknown_topic_or_partition, -1, -1)]


def test_fetch_with_matching_last_fetched_epoch_gets_records(client):
    create(client, "diverge-none")
    produce(client, "diverge-none", records(3))
    _, partition = fetch(client, "diverge-none", 1, last_fetched_epoch=0)
    assert partition.error_code == ErrorCode.none
    assert [offset for offset, _ in decoded_values(partition.records)] == [0, 1, 2]
    assert (partition.diverging_epoch.epoch, partition.diverging_epoch.end_offset) == (-1, -1)  # not sent


def test_fetch_beyond_the_end_of_its_epoch_diverges(client):
    """A fetcher holding more of epoch 0 than we do (fetch offset 5, our log ends at 3)
    truncates to 3: no records, no error, DivergingEpoch (0, 3)."""
    create(client, "diverge-longer")
    produce(client, "diverge-longer", records(3))
    _, partition = fetch(client, "diverge-longer", 5, last_fetched_epoch=0)
    assert partition.error_code == ErrorCode.none
    assert partition.records in (b"", None)
    assert (partition.diverging_epoch.epoch, partition.diverging_epoch.end_offset) == (0, 3)
    assert partition.high_watermark == 3
    # without an epoch the same offset is simply out of range
    assert fetch(client, "diverge-longer", 5)[1].error_code == ErrorCode.offset_out_of_range


def test_fetch_with_an_epoch_we_never_had_is_out_of_range(client):
    create(client, "diverge-unknown")
    produce(client, "diverge-unknown", records(2))
    _, partition = fetch(client, "diverge-unknown", 1, last_fetched_epoch=4)
    assert partition.error_code == ErrorCode.offset_out_of_range
    assert (partition.diverging_epoch.epoch, partition.diverging_epoch.end_offset) == (-1, -1)


def test_diverging_fetch_answers_at_once_despite_max_wait(client):
    create(client, "diverge-long-poll")
    produce(client, "diverge-long-poll", records(1))
    started = time.monotonic()
    _, partition = fetch(client, "diverge-long-poll", 4, last_fetched_epoch=0, max_wait_ms=10_000, min_bytes=1)
    assert time.monotonic() - started < 5
    assert (partition.diverging_epoch.epoch, partition.diverging_epoch.end_offset) == (0, 1)


# --- two epochs: stop, raise the epoch in the topic table, start, produce --------------------

def set_leader_epoch(data_dir, topic: str, epoch: int) -> None:
    path = data_dir / "controller" / "topics.json"
    table = json.loads(path.read_text())
    for entry in table["topics"]:
        if entry["name"] == topic:
            entry["leader_epochs"] = [epoch] * entry["partitions"]
    path.write_text(json.dumps(table))


def leader_epoch_in_metadata(client: WireClient, topic: str) -> int:
    response = client.call(metadata_request(12, [topic]))
    return response.topics[0].partitions[0].leader_epoch


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A node whose topic 'two-epochs' holds offsets 0-2 of epoch 0 and 3-4 of epoch 2,
    and what was answered between the epoch change and the first epoch-2 write."""
    data_dir = tmp_path_factory.mktemp("two-epochs") / "node0"
    with running_broker(data_dir) as process:
        with WireClient(process.kafka_port) as client:
            create(client, "two-epochs")
            assert produce(client, "two-epochs", records(3, prefix="old")).error_code == ErrorCode.none
        assert process.stop() == 0
        set_leader_epoch(data_dir, "two-epochs", 2)
        process.start()
        with WireClient(process.kafka_port) as client:
            before_write = {epoch: end_offset(client, "two-epochs", epoch) for epoch in (0, 1, 2, 3)}
            assert produce(client, "two-epochs", records(2, prefix="new")).error_code == ErrorCode.none
        yield process, before_write


@pytest.fixture
def epochs_client(two_epochs):
    process, _ = two_epochs
    with WireClient(process.kafka_port) as connection:
        yield connection


def test_new_epoch_counts_from_the_log_end_before_it_writes(two_epochs):
    _, before_write = two_epochs
    assert before_write == {0: (ErrorCode.none, 0, 3), 1: (ErrorCode.none, 0, 3),
                            2: (ErrorCode.none, 2, 3), 3: (ErrorCode.none, -1, -1)}


def test_the_log_holds_both_epochs(epochs_client):
    assert leader_epoch_in_metadata(epochs_client, "two-epochs") == 2
    _, partition = fetch(epochs_client, "two-epochs", 0)
    assert batch_epochs(partition.records) == [(0, 0), (3, 2)]


@pytest.mark.parametrize("version", range(2, 5))
def test_end_offsets_of_each_epoch(epochs_client, version):
    assert end_offset(epochs_client, "two-epochs", 0, version) == (ErrorCode.none, 0, 3)
    assert end_offset(epochs_client, "two-epochs", 1, version) == (ErrorCode.none, 0, 3)  # largest known <= 1
    assert end_offset(epochs_client, "two-epochs", 2, version) == (ErrorCode.none, 2, 5)
    assert end_offset(epochs_client, "two-epochs", 3, version) == (ErrorCode.none, -1, -1)


def test_current_leader_epoch_fenced_and_unknown(epochs_client):
    assert end_offset(epochs_client, "two-epochs", 0, current_leader_epoch=1) == (
        ErrorCode.fenced_leader_epoch, -1, -1)
    assert end_offset(epochs_client, "two-epochs", 0, current_leader_epoch=3) == (
        ErrorCode.unknown_leader_epoch, -1, -1)
    assert end_offset(epochs_client, "two-epochs", 0, current_leader_epoch=2) == (ErrorCode.none, 0, 3)
    _, fenced = fetch(epochs_client, "two-epochs", 3, current_leader_epoch=1, last_fetched_epoch=0)
    assert fenced.error_code == ErrorCode.fenced_leader_epoch


@pytest.mark.parametrize(("last_fetched_epoch", "fetch_offset"), [
    (1, 4),  # an epoch we never wrote: our largest below it, epoch 0, ends at 3
    (1, 3),  # ... even at that offset, since epoch 0 < 1
    (0, 4),  # epoch 0 ends at 3, below the fetch offset
])
def test_fetch_from_a_diverged_log_gets_the_diverging_epoch(epochs_client, last_fetched_epoch, fetch_offset):
    _, partition = fetch(epochs_client, "two-epochs", fetch_offset, last_fetched_epoch=last_fetched_epoch,
                         current_leader_epoch=2)
    assert partition.error_code == ErrorCode.none
    assert partition.records in (b"", None)
    assert (partition.diverging_epoch.epoch, partition.diverging_epoch.end_offset) == (0, 3)


@pytest.mark.parametrize(("last_fetched_epoch", "fetch_offset", "expected_offsets"), [
    (0, 3, [3, 4]),  # the end of epoch 0: read on into epoch 2
    (0, 1, [0, 1, 2, 3, 4]),
    (2, 4, [3, 4]),
    (2, 5, []),  # at the log end: nothing yet, no error
])
def test_fetch_from_a_log_that_agrees_gets_records(epochs_client, last_fetched_epoch, fetch_offset,
                                                   expected_offsets):
    _, partition = fetch(epochs_client, "two-epochs", fetch_offset, last_fetched_epoch=last_fetched_epoch)
    assert partition.error_code == ErrorCode.none
    assert (partition.diverging_epoch.epoch, partition.diverging_epoch.end_offset) == (-1, -1)
    assert [offset for offset, _ in decoded_values(partition.records or b"")] == expected_offsets


def test_epochs_survive_a_restart(two_epochs, epochs_client):
    process, _ = two_epochs
    epochs_client.close()
    assert process.stop() == 0
    process.start()
    with WireClient(process.kafka_port) as client:
        assert end_offset(client, "two-epochs", 1) == (ErrorCode.none, 0, 3)
        assert end_offset(client, "two-epochs", 2) == (ErrorCode.none, 2, 5)


# --- Partition rules on a stub log (the real leader epoch cache) ------------------------------

class EpochLog:
    """The part of a PartitionLog the epoch rules read, over the real LeaderEpochCache."""

    def __init__(self, entries: list[tuple[int, int]], log_end_offset: int, log_start_offset: int = 0) -> None:
        self.cache = LeaderEpochCache([EpochEntry(epoch, start) for epoch, start in entries])
        self.log_end_offset = Offset(log_end_offset)
        self.log_start_offset = Offset(log_start_offset)

    @property
    def latest_epoch(self):
        return self.cache.latest_epoch

    def end_offset_for(self, requested_epoch):
        return self.cache.end_offset_for(requested_epoch, self.log_end_offset)


def partition_on(log: EpochLog, leader_epoch: int) -> Partition:
    topic = Topic("t", uuid.uuid4(), 1, 1, leader_epochs=[leader_epoch])
    return Partition("t", 0, log, producers=None, topic_entry=lambda: topic, cold_tier=ColdTier(), clock=None)


@pytest.mark.parametrize(("entries", "log_end", "leader_epoch", "answers"), [
    # the leader wrote in its epoch: the log's own answers
    ([(0, 0), (2, 10)], 15, 2, {-1: (-1, -1), 0: (0, 10), 1: (0, 10), 2: (2, 15), 3: (-1, -1)}),
    # elected in epoch 4, nothing written yet: as if the cache held (4, 15)
    ([(0, 0), (2, 10)], 15, 4, {1: (0, 10), 2: (2, 15), 3: (2, 15), 4: (4, 15), 5: (-1, -1)}),
    # an empty log led in epoch 3: as if the cache held (3, 0)
    ([], 0, 3, {-1: (-1, -1), 1: (1, 0), 3: (3, 0), 4: (-1, -1)}),
])
def test_end_offset_for_as_a_leader(entries, log_end, leader_epoch, answers):
    partition = partition_on(EpochLog(entries, log_end), leader_epoch)
    assert {epoch: partition.end_offset_for(epoch) for epoch in answers} == answers


@pytest.mark.parametrize(("last_fetched_epoch", "fetch_offset", "expected"), [
    (-1, 99, None),  # no epoch: nothing to check
    (2, 12, None), (2, 15, None), (2, 16, (2, 15)),
    (0, 10, None), (0, 12, (0, 10)), (1, 10, (0, 10)), (1, 12, (0, 10)),
])
def test_diverging_epoch(last_fetched_epoch, fetch_offset, expected):
    partition = partition_on(EpochLog([(0, 0), (2, 10)], 15), 2)
    assert partition.diverging_epoch(last_fetched_epoch, fetch_offset) == expected


def test_diverging_epoch_out_of_range_cases():
    partition = partition_on(EpochLog([(0, 0), (2, 10)], 15), 2)
    with pytest.raises(OffsetOutOfRange):
        partition.diverging_epoch(3, 12)  # an epoch above ours: its end is unknown
    trimmed = partition_on(EpochLog([(0, 5), (2, 10)], 15, log_start_offset=5), 2)
    with pytest.raises(OffsetOutOfRange):
        trimmed.diverging_epoch(2, 3)  # below the log start, whatever the epochs say
