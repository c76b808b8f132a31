"""Metadata, Produce, Fetch, ListOffsets and InitProducerId at the wire level, every
advertised version, against one real `shoal start` process (shared by the module).

Requests are kio objects sent by tests/wire_client.py, so each test controls the exact
bytes: duplicate batches, stale epochs, corrupt CRCs, old magic, session ids."""

from __future__ import annotations

import struct
import threading
import time
import uuid

import pytest
from kio.schema.errors import ErrorCode

from broker.protocol.kio_build import build
from broker.records import NewRecord, build_batch, iter_records
from tests.support import module_broker
from tests.wire_client import WireClient, encode, ms, request_class

METADATA, PRODUCE, FETCH, LIST_OFFSETS, INIT_PRODUCER_ID = 3, 0, 1, 2, 22


broker = module_broker("protocol")


@pytest.fixture
def client(broker):
    with WireClient(broker.kafka_port) as connection:
        yield connection


# --- request builders ---------------------------------------------------------------------

def metadata_request(version: int, names: list[str] | None, allow_auto_create: bool = True):
    topic_class = request_class(METADATA, version, "MetadataRequestTopic")
    topics = None if names is None else tuple(build(topic_class, name=name, topic_id=None) for name in names)
    return build(request_class(METADATA, version), topics=topics, allow_auto_topic_creation=allow_auto_create,
                 include_cluster_authorized_operations=False, include_topic_authorized_operations=False)


def produce_request(version: int, topic: str, records: bytes | None, *, acks: int = -1, partition: int = 0,
                    transactional_id: str | None = None):
    partition_class = request_class(PRODUCE, version, "PartitionProduceData")
    topic_class = request_class(PRODUCE, version, "TopicProduceData")
    return build(request_class(PRODUCE, version), transactional_id=transactional_id, acks=acks, timeout=ms(10_000),
                 topic_data=(build(topic_class, name=topic, partition_data=(
                     build(partition_class, index=partition, records=records),)),))


def fetch_request(version: int, topic: str, offset: int, *, partition: int = 0, max_wait_ms: int = 0,
                  min_bytes: int = 1, max_bytes: int = 50 * 1024 * 1024, partition_max_bytes: int = 1024 * 1024,
                  isolation_level: int = 0, session_epoch: int = -1, session_id: int = 0,
                  current_leader_epoch: int = -1, last_fetched_epoch: int = -1):
    partition_class = request_class(FETCH, version, "FetchPartition")
    topic_class = request_class(FETCH, version, "FetchTopic")
    return build(request_class(FETCH, version), cluster_id=None, replica_id=-1, max_wait=ms(max_wait_ms),
                 min_bytes=min_bytes, max_bytes=max_bytes, isolation_level=isolation_level,
                 session_id=session_id, session_epoch=session_epoch, forgotten_topics_data=(), rack_id="",
                 topics=(build(topic_class, topic=topic, partitions=(
                     build(partition_class, partition=partition, current_leader_epoch=current_leader_epoch,
                           fetch_offset=offset, last_fetched_epoch=last_fetched_epoch, log_start_offset=-1,
                           partition_max_bytes=partition_max_bytes),)),))


def list_offsets_request(version: int, topic: str, timestamp: int, *, partition: int = 0,
                         current_leader_epoch: int = -1, isolation_level: int = 0):
    partition_class = request_class(LIST_OFFSETS, version, "ListOffsetsPartition")
    topic_class = request_class(LIST_OFFSETS, version, "ListOffsetsTopic")
    return build(request_class(LIST_OFFSETS, version), replica_id=-1, isolation_level=isolation_level,
                 topics=(build(topic_class, name=topic, partitions=(
                     build(partition_class, partition_index=partition, timestamp=timestamp,
                           current_leader_epoch=current_leader_epoch, max_num_offsets=1),)),))


def init_producer_id_request(version: int, transactional_id: str | None = None,
                             producer_id: int = -1, producer_epoch: int = -1):
    return build(request_class(INIT_PRODUCER_ID, version), transactional_id=transactional_id,
                 transaction_timeout=ms(60_000), producer_id=producer_id, producer_epoch=producer_epoch)


def records(count: int, prefix: str = "value", **batch_options) -> bytes:
    return bytes(build_batch([NewRecord(f"key-{i}".encode(), f"{prefix}-{i}".encode(), (), 1_700_000_000_000 + i)
                              for i in range(count)], **batch_options))


def create(client: WireClient, topic: str) -> None:
    response = client.call(metadata_request(12, [topic]))
    assert response.topics[0].error_code == ErrorCode.none


def produce(client: WireClient, topic: str, data: bytes | None, version: int = 9, **options):
    response = client.call(produce_request(version, topic, data, **options))
    return response.responses[0].partition_responses[0]


def fetch(client: WireClient, topic: str, offset: int, version: int = 12, **options):
    response = client.call(fetch_request(version, topic, offset, **options))
    return response, response.responses[0].partitions[0] if response.responses else None


def decoded_values(data: bytes) -> list[tuple[int, bytes]]:
    values = []
    position = 0
    while position < len(data):
        size = struct.unpack_from(">i", data, position + 8)[0] + 12
        values += [(record.offset, record.value) for record in iter_records(data[position: position + size])]
        position += size
    return values


# --- Metadata --------------------------------------------------------------------------------

@pytest.mark.parametrize("version", range(0, 13))
def test_metadata_every_version_lists_broker_topic_and_leader(client, broker, version):
    topic = f"metadata-v{version}"
    response = client.call(metadata_request(version, [topic]))  # auto-created
    assert len(response.brokers) == 1
    assert (response.brokers[0].node_id, response.brokers[0].port) == (0, broker.kafka_port)
    (entry,) = response.topics
    assert (entry.error_code, entry.name) == (ErrorCode.none, topic)
    (partition,) = entry.partitions
    assert (partition.error_code, partition.partition_index, partition.leader_id) == (ErrorCode.none, 0, 0)
    assert tuple(partition.replica_nodes) == (0,) and tuple(partition.isr_nodes) == (0,)
    if version >= 1:
        assert response.controller_id == 0
    if version >= 2:
        assert response.cluster_id and len(response.cluster_id) == 22
    if version >= 7:
        assert partition.leader_epoch == 0
    if version >= 10:
        assert isinstance(entry.topic_id, uuid.UUID) and entry.topic_id.int != 0


def test_metadata_cluster_id_is_stable_and_topic_ids_resolve(client):
    first = client.call(metadata_request(12, ["ids-topic"]))
    second = client.call(metadata_request(12, None))
    assert first.cluster_id == second.cluster_id
    topic_id = first.topics[0].topic_id
    topic_class = request_class(METADATA, 12, "MetadataRequestTopic")
    by_id = client.call(build(request_class(METADATA, 12), topics=(topic_class(topic_id=topic_id, name=None),),
                              allow_auto_topic_creation=False, include_topic_authorized_operations=False))
    assert (by_id.topics[0].error_code, by_id.topics[0].name) == (ErrorCode.none, "ids-topic")
    unknown = client.call(build(request_class(METADATA, 12), topics=(topic_class(topic_id=uuid.uuid4(), name=None),),
                                allow_auto_topic_creation=False, include_topic_authorized_operations=False))
    assert unknown.topics[0].error_code == ErrorCode.unknown_topic_id


def test_metadata_all_topics_null_v1_and_empty_v0(client):
    create(client, "listed-topic")
    assert "listed-topic" in {topic.name for topic in client.call(metadata_request(1, None)).topics}
    assert "listed-topic" in {topic.name for topic in client.call(metadata_request(0, [])).topics}
    assert client.call(metadata_request(1, [])).topics == ()


def test_metadata_errors_for_unknown_and_invalid_topics(client):
    unknown = client.call(metadata_request(9, ["never-created"], allow_auto_create=False))
    assert unknown.topics[0].error_code == ErrorCode.unknown_topic_or_partition
    invalid = client.call(metadata_request(9, ["bad/name"]))
    assert invalid.topics[0].error_code == ErrorCode.invalid_topic_exception
    assert "never-created" not in {topic.name for topic in client.call(metadata_request(9, None)).topics}


# --- Produce ------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", range(3, 10))
def test_produce_every_version_assigns_consecutive_offsets(client, version):
    topic = f"produce-v{version}"
    create(client, topic)
    first = produce(client, topic, records(3), version=version)
    second = produce(client, topic, records(2), version=version)
    assert (first.error_code, first.base_offset) == (ErrorCode.none, 0)
    assert (second.error_code, second.base_offset) == (ErrorCode.none, 3)
    if version >= 5:
        assert second.log_start_offset == 0
    assert second.log_append_time is None  # CreateTime topic: -1


def test_produce_acks_zero_gets_no_response_but_appends(client):
    create(client, "acks-zero")
    client.send_raw(PRODUCE, 9, encode(produce_request(9, "acks-zero", records(4), acks=0)))
    # The next answer on this connection belongs to the next request: acks=0 sent nothing.
    _, partition = fetch(client, "acks-zero", 0)
    assert [offset for offset, _ in decoded_values(partition.records)] == [0, 1, 2, 3]


def test_produce_acks_zero_failure_closes_the_connection(broker):
    with WireClient(broker.kafka_port) as failing:
        failing.send_raw(PRODUCE, 9, encode(produce_request(9, "acks-zero-missing", records(1), acks=0, partition=9)))
        with pytest.raises(ConnectionError):
            failing.receive_raw()


def test_produce_refusals_use_kafka_error_codes(client):
    create(client, "refusals")
    corrupt = bytearray(records(2))
    corrupt[-1] ^= 0xFF
    assert produce(client, "refusals", bytes(corrupt)).error_code == ErrorCode.corrupt_message
    two_batches = records(1) + records(1)
    assert produce(client, "refusals", two_batches).error_code == ErrorCode.invalid_record
    magic_one = bytearray(records(1))
    magic_one[16] = 1
    assert produce(client, "refusals", bytes(magic_one)).error_code == ErrorCode.invalid_record
    assert produce(client, "refusals", None).error_code == ErrorCode.invalid_record
    too_large = bytes(build_batch([NewRecord(None, b"x" * 1_100_000, (), 1)]))
    assert produce(client, "refusals", too_large).error_code == ErrorCode.message_too_large
    assert produce(client, "refusals", records(1), acks=2).error_code == ErrorCode.invalid_required_acks
    transactional = records(1, producer_id=5, producer_epoch=0, base_sequence=0, is_transactional=True)
    assert produce(client, "refusals", transactional).error_code == ErrorCode.unsupported_version
    assert produce(client, "refusals", records(1), transactional_id="tx").error_code == ErrorCode.unsupported_version
    assert produce(client, "no-such-topic-x", records(1)).error_code == ErrorCode.unknown_topic_or_partition
    assert produce(client, "refusals", records(1), partition=7).error_code == ErrorCode.unknown_topic_or_partition
    assert produce(client, "__consumer_offsets", records(1)).error_code == ErrorCode.invalid_topic_exception
    # Nothing refused was stored: the next good batch still gets offset 0.
    assert produce(client, "refusals", records(1)).base_offset == 0


def test_idempotent_retry_returns_original_offsets_and_gaps_are_refused(client):
    create(client, "idempotent")
    producer = client.call(init_producer_id_request(4))
    assert producer.error_code == ErrorCode.none
    pid, epoch = producer.producer_id, producer.producer_epoch
    batch = records(3, producer_id=pid, producer_epoch=epoch, base_sequence=0)
    first = produce(client, "idempotent", batch)
    retry = produce(client, "idempotent", batch)
    assert (first.error_code, retry.error_code) == (ErrorCode.none, ErrorCode.none)
    assert retry.base_offset == first.base_offset == 0
    following = produce(client, "idempotent", records(2, producer_id=pid, producer_epoch=epoch, base_sequence=3))
    assert following.base_offset == 3
    gap = produce(client, "idempotent", records(1, producer_id=pid, producer_epoch=epoch, base_sequence=9))
    assert gap.error_code == ErrorCode.out_of_order_sequence_number
    bumped = produce(client, "idempotent", records(1, producer_id=pid, producer_epoch=epoch + 1, base_sequence=0))
    assert (bumped.error_code, bumped.base_offset) == (ErrorCode.none, 5)
    stale = produce(client, "idempotent", records(1, producer_id=pid, producer_epoch=epoch, base_sequence=5))
    assert stale.error_code == ErrorCode.invalid_producer_epoch
    _, partition = fetch(client, "idempotent", 0)
    assert [offset for offset, _ in decoded_values(partition.records)] == [0, 1, 2, 3, 4, 5]


def test_unknown_producer_is_accepted_at_any_sequence(client):
    """KIP-360: a producer the partition forgot continues without an error."""
    create(client, "kip-360")
    batch = records(1, producer_id=987_654, producer_epoch=3, base_sequence=41)
    assert produce(client, "kip-360", batch).error_code == ErrorCode.none
    following = records(1, producer_id=987_654, producer_epoch=3, base_sequence=42)
    assert produce(client, "kip-360", following).error_code == ErrorCode.none


# --- InitProducerId ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", range(0, 5))
def test_init_producer_id_every_version_hands_out_fresh_ids(client, version):
    first = client.call(init_producer_id_request(version))
    second = client.call(init_producer_id_request(version))
    assert first.error_code == second.error_code == ErrorCode.none
    assert second.producer_id > first.producer_id >= 0
    assert first.producer_epoch == 0


def test_init_producer_id_refuses_transactions_and_half_ids(client):
    assert client.call(init_producer_id_request(4, "my-tx")).error_code == ErrorCode.unsupported_version
    assert client.call(init_producer_id_request(3, None, producer_id=5)).error_code == ErrorCode.invalid_request
    bump = client.call(init_producer_id_request(4, None, producer_id=5, producer_epoch=0))
    assert bump.error_code == ErrorCode.none and bump.producer_id != 5


# --- Fetch ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", range(4, 13))
def test_fetch_every_version_returns_the_batches(client, version):
    topic = f"fetch-v{version}"
    create(client, topic)
    produce(client, topic, records(2, prefix="a"))
    produce(client, topic, records(2, prefix="b"))
    response, partition = fetch(client, topic, 1, version=version)
    assert partition.error_code == ErrorCode.none
    assert partition.high_watermark == 4 and partition.last_stable_offset == 4
    if version >= 5:
        assert partition.log_start_offset == 0
    if version >= 7:
        assert (response.error_code, response.session_id) == (ErrorCode.none, 0)
    values = decoded_values(partition.records)
    assert values == [(0, b"a-0"), (1, b"a-1"), (2, b"b-0"), (3, b"b-1")]
    assert partition.aborted_transactions is None  # read_uncommitted


def test_fetch_read_committed_has_empty_aborted_list_and_lso(client):
    create(client, "committed")
    produce(client, "committed", records(2))
    _, partition = fetch(client, "committed", 0, isolation_level=1)
    assert partition.aborted_transactions == ()
    assert partition.last_stable_offset == partition.high_watermark == 2


def test_fetch_errors(client):
    create(client, "fetch-errors")
    produce(client, "fetch-errors", records(2))
    assert fetch(client, "fetch-errors", 3)[1].error_code == ErrorCode.offset_out_of_range
    assert fetch(client, "fetch-errors", 2)[1].records in (b"", None)  # at the end: empty, no error
    assert fetch(client, "no-such-fetch-topic", 0)[1].error_code == ErrorCode.unknown_topic_or_partition
    assert fetch(client, "fetch-errors", 0, current_leader_epoch=5)[1].error_code == ErrorCode.unknown_leader_epoch
    incremental, _ = fetch(client, "fetch-errors", 0, session_id=77, session_epoch=3)
    assert incremental.error_code == ErrorCode.fetch_session_id_not_found
    full_with_old_session, partition = fetch(client, "fetch-errors", 0, session_id=77, session_epoch=0)
    assert full_with_old_session.error_code == ErrorCode.none and full_with_old_session.session_id == 0
    assert len(decoded_values(partition.records)) == 2


def test_fetch_byte_limits_first_batch_always_whole(client):
    create(client, "limits")
    for prefix in ("a", "b", "c"):
        produce(client, "limits", bytes(build_batch([NewRecord(None, prefix.encode() * 3000, (), 1)])))
    _, partition = fetch(client, "limits", 0, partition_max_bytes=100, max_bytes=100)
    assert [offset for offset, _ in decoded_values(partition.records)] == [0]  # larger than both limits
    _, partition = fetch(client, "limits", 0, partition_max_bytes=7000)
    assert [offset for offset, _ in decoded_values(partition.records)] == [0, 1]
    _, partition = fetch(client, "limits", 0, max_bytes=7000)
    assert [offset for offset, _ in decoded_values(partition.records)] == [0, 1]


def test_fetch_long_poll_waits_then_wakes_on_produce(broker, client):
    create(client, "long-poll")
    started = time.monotonic()
    _, partition = fetch(client, "long-poll", 0, max_wait_ms=400)
    assert 0.35 <= time.monotonic() - started < 3 and partition.records in (b"", None)

    def produce_later() -> None:
        time.sleep(0.3)
        with WireClient(broker.kafka_port) as producer:
            produce(producer, "long-poll", records(1))

    thread = threading.Thread(target=produce_later)
    thread.start()
    started = time.monotonic()
    _, partition = fetch(client, "long-poll", 0, max_wait_ms=12_000)
    elapsed = time.monotonic() - started
    thread.join()
    assert len(decoded_values(partition.records)) == 1
    # unwoken, the fetch would return only after 12 s
    assert elapsed < 8, f"woken after {elapsed:.2f}s, not as soon as data arrived"


def test_fetch_min_bytes_keeps_waiting_until_enough(broker, client):
    create(client, "min-bytes")
    one_batch = records(1)

    def produce_twice() -> None:
        with WireClient(broker.kafka_port) as producer:
            for _ in range(2):
                time.sleep(0.2)
                produce(producer, "min-bytes", one_batch)

    thread = threading.Thread(target=produce_twice)
    thread.start()
    _, partition = fetch(client, "min-bytes", 0, max_wait_ms=10_000, min_bytes=len(one_batch) + 1)
    thread.join()
    assert len(decoded_values(partition.records)) == 2


# --- ListOffsets ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", range(1, 8))
def test_list_offsets_every_version(client, version):
    topic = f"list-offsets-v{version}"
    create(client, topic)
    produce(client, topic, records(3))  # timestamps 1_700_000_000_000 + 0..2
    produce(client, topic, bytes(build_batch([NewRecord(None, b"late", (), 1_800_000_000_000)])))
    produce(client, topic, bytes(build_batch([NewRecord(None, b"early", (), 1_750_000_000_000)])))

    def listed(timestamp: int):
        partition = client.call(list_offsets_request(version, topic, timestamp)).topics[0].partitions[0]
        assert partition.error_code == ErrorCode.none
        if version >= 4:
            assert partition.leader_epoch == (0 if partition.offset >= 0 else -1)
        return partition.offset, partition.timestamp

    assert listed(-2) == (0, -1)
    assert listed(-1) == (5, -1)
    assert listed(1_700_000_000_001) == (1, 1_700_000_000_001)
    assert listed(1_760_000_000_000) == (3, 1_800_000_000_000)
    assert listed(1_900_000_000_000) == (-1, -1)
    if version >= 7:
        assert listed(-3) == (3, 1_800_000_000_000)


def test_list_offsets_errors(client):
    create(client, "list-errors")
    unknown = client.call(list_offsets_request(7, "no-such-list-topic", -1)).topics[0].partitions[0]
    assert unknown.error_code == ErrorCode.unknown_topic_or_partition
    fenced = client.call(list_offsets_request(7, "list-errors", -1, current_leader_epoch=9)).topics[0].partitions[0]
    assert fenced.error_code == ErrorCode.unknown_leader_epoch


# --- topic configs that change what Produce stores ---------------------------------------------

def create_with_configs(client: WireClient, topic: str, configs: dict[str, str]) -> None:
    config_class = request_class(19, 5, "CreatableTopicConfig")
    topic_class = request_class(19, 5, "CreatableTopic")
    request = request_class(19, 5)(topics=(topic_class(
        name=topic, num_partitions=1, replication_factor=1, assignments=(),
        configs=tuple(config_class(name=name, value=value) for name, value in configs.items())),),
        timeout=ms(10_000), validate_only=False)
    assert client.call(request).topics[0].error_code == ErrorCode.none


def stored_batch(client: WireClient, topic: str) -> bytes:
    return fetch(client, topic, 0)[1].records


def test_topic_compression_type_recompresses(client):
    from broker.records import Compression, read_header

    create_with_configs(client, "recompressed", {"compression.type": "zstd"})
    produce(client, "recompressed", records(5, compression=Compression.GZIP))
    batch = stored_batch(client, "recompressed")
    assert read_header(batch).compression == Compression.ZSTD
    assert decoded_values(batch) == [(index, f"value-{index}".encode()) for index in range(5)]
    create_with_configs(client, "kept-as-sent", {"compression.type": "gzip"})
    sent = records(2, compression=Compression.GZIP)
    produce(client, "kept-as-sent", sent)
    assert stored_batch(client, "kept-as-sent")[21:] == sent[21:]  # untouched from the attributes on


def test_log_append_time_is_set_and_returned(client):
    from broker.records import read_header

    create_with_configs(client, "append-time", {"message.timestamp.type": "LogAppendTime"})
    before_ms = int(time.time() * 1000)
    response = produce(client, "append-time", records(3))
    after_ms = int(time.time() * 1000)
    append_time_ms = round(response.log_append_time.timestamp() * 1000)
    assert before_ms - 1000 <= append_time_ms <= after_ms + 1000
    batch = stored_batch(client, "append-time")
    header = read_header(batch)
    assert header.is_log_append_time and header.max_timestamp == append_time_ms
    assert {record.timestamp for record in iter_records(batch)} == {append_time_ms}


def test_min_insync_replicas_and_timestamp_difference(client):
    create_with_configs(client, "needs-two-replicas", {"min.insync.replicas": "2"})
    assert produce(client, "needs-two-replicas", records(1), acks=-1).error_code == ErrorCode.not_enough_replicas
    assert produce(client, "needs-two-replicas", records(1), acks=1).error_code == ErrorCode.none
    create_with_configs(client, "recent-only", {"message.timestamp.difference.max.ms": "60000"})
    assert produce(client, "recent-only", records(1)).error_code == ErrorCode.invalid_timestamp  # 2023 timestamps
    now_ms = int(time.time() * 1000)
    fresh = bytes(build_batch([NewRecord(None, b"now", (), now_ms)]))
    assert produce(client, "recent-only", fresh).error_code == ErrorCode.none


# --- topic lifecycle seen from the data path ----------------------------------------------------

def delete_topic(client: WireClient, topic: str) -> None:
    response = client.call(request_class(20, 4)(topic_names=(topic,), timeout=ms(10_000)))
    assert response.responses[0].error_code == ErrorCode.none


def test_produce_right_after_create_and_after_delete_and_recreate(broker, client):
    create_with_configs(client, "reborn", {})
    assert produce(client, "reborn", records(3)).base_offset == 0  # no wait for the log to open
    waiting_result = {}

    def fetch_while_deleted() -> None:
        with WireClient(broker.kafka_port) as waiting:
            started = time.monotonic()
            waiting_result["partition"] = fetch(waiting, "reborn", 3, max_wait_ms=10_000)[1]
            waiting_result["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=fetch_while_deleted)
    thread.start()
    time.sleep(0.3)
    delete_topic(client, "reborn")
    thread.join()
    assert waiting_result["partition"].error_code == ErrorCode.unknown_topic_or_partition
    assert waiting_result["elapsed"] < 5
    create_with_configs(client, "reborn", {})
    response = produce(client, "reborn", records(1))
    assert (response.error_code, response.base_offset) == (ErrorCode.none, 0)  # a fresh log
    assert [offset for offset, _ in decoded_values(fetch(client, "reborn", 0)[1].records)] == [0]
