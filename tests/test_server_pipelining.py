"""Pipelined requests on one connection, against one real `shoal start` process (fsync
mode, the default): responses come back in request order, produce requests share
group-commit fsyncs instead of each waiting for its own, idempotent sequences still
deduplicate, a long-poll Fetch is not overtaken, and a malformed request closes the
connection only after the earlier responses were written.

Requests are written back to back on a raw socket before any response is read, which is
what librdkafka and the Java client do (up to 5 produce requests in flight)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from broker.protocol.kio_build import build
from broker.protocol.messages import is_flexible_request
from broker.records import NewRecord, build_batch
from tests.admin_support import http_get
from tests.support import BrokerProcess, module_broker
from tests.wire_client import WireClient, encode, ms, request_class, request_header

PRODUCE, FETCH, LIST_OFFSETS, METADATA, API_VERSIONS, INIT_PRODUCER_ID = 0, 1, 2, 3, 18, 22
PIPELINED_PRODUCES = 64
RECORDS_PER_BATCH = 3


broker = module_broker("pipelining")


@pytest.fixture
def client(broker):
    with WireClient(broker.kafka_port) as connection:
        yield connection


# --- pipelining on a raw socket -------------------------------------------------------------

def send(client: WireClient, request) -> int:
    """Write one request without waiting for its response; returns its correlation id."""
    return client.send_raw(int(request.__api_key__), int(request.__version__), encode(request))


def receive(client: WireClient, api_key: int, version: int) -> tuple[int, object]:
    """(correlation id, decoded response) of the next response on the connection."""
    payload = client.receive_raw()
    (correlation_id,) = struct.unpack_from(">i", payload, 0)
    offset = 5 if api_key != API_VERSIONS and is_flexible_request(api_key, version) else 4
    response, _ = entity_reader(load_response_schema(api_key, version))(payload[offset:], 0)
    return correlation_id, response


def connection_closed(client: WireClient) -> bool:
    """True when the broker closed the connection (end of stream within the timeout)."""
    client.sock.settimeout(10)
    try:
        return client.sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --- requests ----------------------------------------------------------------------------------

def batch(count: int, **batch_options) -> bytes:
    return bytes(build_batch([NewRecord(b"key", f"value-{i}".encode(), (), 1_700_000_000_000 + i)
                              for i in range(count)], **batch_options))


def produce_request(topic: str, records: bytes, *, acks: int = -1, version: int = 9):
    partition_class = request_class(PRODUCE, version, "PartitionProduceData")
    topic_class = request_class(PRODUCE, version, "TopicProduceData")
    return build(request_class(PRODUCE, version), transactional_id=None, acks=acks, timeout=ms(10_000),
                 topic_data=(build(topic_class, name=topic, partition_data=(
                     build(partition_class, index=0, records=records),)),))


def fetch_request(topic: str, offset: int, max_wait_ms: int, version: int = 12):
    partition_class = request_class(FETCH, version, "FetchPartition")
    topic_class = request_class(FETCH, version, "FetchTopic")
    return build(request_class(FETCH, version), cluster_id=None, replica_id=-1, max_wait=ms(max_wait_ms),
                 min_bytes=1, max_bytes=1024 * 1024, isolation_level=0, session_id=0, session_epoch=-1,
                 forgotten_topics_data=(), rack_id="",
                 topics=(build(topic_class, topic=topic, partitions=(
                     build(partition_class, partition=0, current_leader_epoch=-1, fetch_offset=offset,
                           last_fetched_epoch=-1, log_start_offset=-1, partition_max_bytes=1024 * 1024),)),))


def api_versions_request(version: int = 3):
    return build(request_class(API_VERSIONS, version), client_software_name="pipelining-test",
                 client_software_version="1.0")


def create_topic(client: WireClient, topic: str) -> None:
    version = 12
    topic_class = request_class(METADATA, version, "MetadataRequestTopic")
    topics = (build(topic_class, name=topic, topic_id=None),)
    response = client.call(build(request_class(METADATA, version), topics=topics, allow_auto_topic_creation=True,
                                 include_cluster_authorized_operations=False,
                                 include_topic_authorized_operations=False))
    assert response.topics[0].error_code == ErrorCode.none


def log_end_offset(client: WireClient, topic: str) -> int:
    version = 7
    partition_class = request_class(LIST_OFFSETS, version, "ListOffsetsPartition")
    topic_class = request_class(LIST_OFFSETS, version, "ListOffsetsTopic")
    response = client.call(build(request_class(LIST_OFFSETS, version), replica_id=-1, isolation_level=0,
                                 topics=(build(topic_class, name=topic, partitions=(
                                     build(partition_class, partition_index=0, timestamp=-1,
                                           current_leader_epoch=-1, max_num_offsets=1),)),)))
    return response.topics[0].partitions[0].offset


def flush_rounds(broker: BrokerProcess) -> int:
    """Group-commit rounds over every partition of the node (LogProbe.flush_rounds)."""
    _, _, text = http_get(broker.admin_port, "/metrics")
    return int(float(re.search(r"^shoal_log_flush_rounds_total (\S+)$", text, re.MULTILINE).group(1)))


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (longest mount point prefix in /proc/mounts)."""
    best, kind = "", ""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mount_point, mount_type = line.split()[1:3]
        inside = str(path) == mount_point or str(path).startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, mount_type
    return kind


def produce_responses(client: WireClient, count: int) -> list[tuple[int, object]]:
    responses = []
    for _ in range(count):
        correlation_id, response = receive(client, PRODUCE, 9)
        responses.append((correlation_id, response.responses[0].partition_responses[0]))
    return responses


# --- tests -------------------------------------------------------------------------------------

def test_pipelined_produces_answer_in_order_and_share_fsyncs(client, broker):
    if filesystem_type(broker.data_dir) in ("tmpfs", "ramfs"):
        # fdatasync returns at once there, so a round ends before the next request is
        # appended and there is nothing to share: the count would say nothing.
        pytest.skip("the data dir is in memory: fsync costs nothing")
    create_topic(client, "pipelined")
    rounds_before = flush_rounds(broker)
    sent = [send(client, produce_request("pipelined", batch(RECORDS_PER_BATCH))) for _ in range(PIPELINED_PRODUCES)]
    responses = produce_responses(client, PIPELINED_PRODUCES)
    rounds = flush_rounds(broker) - rounds_before
    assert [correlation_id for correlation_id, _ in responses] == sent
    assert all(partition.error_code == ErrorCode.none for _, partition in responses)
    assert [partition.base_offset for _, partition in responses] == [
        RECORDS_PER_BATCH * index for index in range(PIPELINED_PRODUCES)]
    # One request at a time per connection needs one round per request; pipelined
    # requests append while an earlier round runs and share the next one.
    assert 1 <= rounds <= PIPELINED_PRODUCES // 4, rounds
    assert log_end_offset(client, "pipelined") == RECORDS_PER_BATCH * PIPELINED_PRODUCES


def test_more_pipelined_bytes_than_the_in_flight_budget_are_all_answered(client):
    """40 requests of 900 KB: past both the request count and the frame bytes a connection
    may have in flight, so the broker stops reading for a while; nothing is lost or reordered."""
    create_topic(client, "large-pipelined")
    large = bytes(build_batch([NewRecord(None, b"x" * 900_000, (), 1_700_000_000_000)]))
    sent = [send(client, produce_request("large-pipelined", large)) for _ in range(40)]
    responses = produce_responses(client, len(sent))
    assert [correlation_id for correlation_id, _ in responses] == sent
    assert [(partition.error_code, partition.base_offset) for _, partition in responses] == [
        (ErrorCode.none, offset) for offset in range(40)]


def test_idempotent_pipelining_with_a_retry_keeps_each_batch_once(broker):
    topic, in_flight = "idempotent-pipelined", 5
    with WireClient(broker.kafka_port) as client:
        create_topic(client, topic)
        producer = client.call(build(request_class(INIT_PRODUCER_ID, 4), transactional_id=None,
                                     transaction_timeout=ms(60_000), producer_id=-1, producer_epoch=-1))
    pid, epoch = producer.producer_id, producer.producer_epoch
    batches = [batch(RECORDS_PER_BATCH, producer_id=pid, producer_epoch=epoch,
                     base_sequence=RECORDS_PER_BATCH * sequence) for sequence in range(in_flight + 1)]
    with WireClient(broker.kafka_port) as lost:  # 5 in flight, then the connection drops unanswered
        for data in batches[:in_flight]:
            send(lost, produce_request(topic, data))
    with WireClient(broker.kafka_port) as client:  # the client retries all 5 in order, then one more,
        sent = [send(client, produce_request(topic, data)) for data in batches]
        sent.append(send(client, produce_request(topic, batches[2])))  # and a batch still in flight again
        responses = produce_responses(client, len(sent))
        assert [correlation_id for correlation_id, _ in responses] == sent
        assert all(partition.error_code == ErrorCode.none for _, partition in responses)
        expected = [RECORDS_PER_BATCH * index for index in range(in_flight + 1)] + [RECORDS_PER_BATCH * 2]
        assert [partition.base_offset for _, partition in responses] == expected
        assert log_end_offset(client, topic) == RECORDS_PER_BATCH * (in_flight + 1)


def test_long_poll_fetch_is_not_overtaken_by_a_later_request(client):
    create_topic(client, "long-poll")
    fetch_id = send(client, fetch_request("long-poll", offset=0, max_wait_ms=500))
    versions_id = send(client, api_versions_request())
    first_id, fetch_response = receive(client, FETCH, 12)
    second_id, versions_response = receive(client, API_VERSIONS, 3)
    assert (first_id, second_id) == (fetch_id, versions_id)
    partition = fetch_response.responses[0].partitions[0]
    assert (partition.error_code, partition.high_watermark, partition.records or b"") == (ErrorCode.none, 0, b"")
    assert versions_response.error_code == ErrorCode.none


def test_acks_zero_produce_keeps_its_place_in_the_order(client):
    create_topic(client, "acks-zero")
    send(client, produce_request("acks-zero", batch(2), acks=0))
    produce_id = send(client, produce_request("acks-zero", batch(1)))
    fetch_id = send(client, fetch_request("acks-zero", offset=0, max_wait_ms=0))
    correlation_id, response = receive(client, PRODUCE, 9)
    assert (correlation_id, response.responses[0].partition_responses[0].base_offset) == (produce_id, 2)
    correlation_id, response = receive(client, FETCH, 12)
    assert (correlation_id, response.responses[0].partitions[0].high_watermark) == (fetch_id, 3)


def test_malformed_request_closes_after_the_earlier_responses(client):
    create_topic(client, "before-malformed")
    sent = [send(client, produce_request("before-malformed", batch(1))) for _ in range(3)]
    sent.append(send(client, api_versions_request()))
    garbage = request_header(PRODUCE, 9, 99) + b"\xff" * 7  # a Produce v9 body that does not decode
    client.sock.sendall(struct.pack(">i", len(garbage)) + garbage)
    send(client, api_versions_request())  # after the malformed one: never answered
    received = [receive(client, PRODUCE, 9)[0] for _ in range(3)] + [receive(client, API_VERSIONS, 3)[0]]
    assert received == sent
    assert connection_closed(client)


def test_a_failed_connection_leaves_others_served(broker):
    with WireClient(broker.kafka_port) as broken:
        broken.sock.sendall(struct.pack(">i", 3) + b"abc")
        assert connection_closed(broken)
    with WireClient(broker.kafka_port) as client:
        assert client.call(api_versions_request()).error_code == ErrorCode.none
