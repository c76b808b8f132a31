"""Every advertised version of the eleven group APIs, encoded by kio, sent to a real
`shoal start` process, and its response decoded by kio (the whole response must parse):
a full group lifecycle per version (find coordinator, join, sync, heartbeat, commit,
fetch, describe, list, leave, delete), plus OffsetDelete and the registry's ranges."""

from __future__ import annotations

import pytest
from kio.schema.errors import ErrorCode

from broker.handlers import registry
from tests.support import create_topic, running_broker
from tests.wire_client import WireClient, ms, request_class

TOPIC = "wire-orders"
FIND_COORDINATOR, JOIN, SYNC, HEARTBEAT, LEAVE = 10, 11, 14, 12, 13
COMMIT, FETCH, LIST, DESCRIBE, DELETE, OFFSET_DELETE = 8, 9, 16, 15, 42, 47

RANGES = {FIND_COORDINATOR: (0, 4), JOIN: (0, 7), SYNC: (0, 5), HEARTBEAT: (0, 4), LEAVE: (0, 5),
          COMMIT: (2, 8), FETCH: (1, 8), LIST: (0, 4), DESCRIBE: (0, 5), DELETE: (0, 2),
          OFFSET_DELETE: (0, 0)}
FLOWS = max(high for _, high in RANGES.values()) + 1


def version(api_key: int, flow: int) -> int:
    low, high = RANGES[api_key]
    return max(low, min(flow, high))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(tmp_path_factory.mktemp("groups-wire") / "node0") as process:
        create_topic(process.bootstrap, TOPIC, 2)
        yield process


def test_registry_advertises_the_group_api_ranges():
    advertised = {key: (low, high) for key, low, high in registry.supported_versions()}
    for api_key, expected in RANGES.items():
        assert advertised[api_key] == expected


def find_coordinator(client: WireClient, flow: int, group_id: str, port: int) -> None:
    v = version(FIND_COORDINATOR, flow)
    request_type = request_class(FIND_COORDINATOR, v)
    if v >= 4:
        response = client.call(request_type(key_type=0, coordinator_keys=(group_id, "other")))
        assert [(c.key, c.error_code, c.port) for c in response.coordinators] == [
            (group_id, ErrorCode.none, port), ("other", ErrorCode.none, port)]
        return
    fields = {"key": group_id} if v == 0 else {"key": group_id, "key_type": 0}
    response = client.call(request_type(**fields))
    assert (response.error_code, response.host, response.port) == (ErrorCode.none, "127.0.0.1", port)


def join(client: WireClient, flow: int, group_id: str) -> tuple[str, int]:
    v = version(JOIN, flow)
    request_type = request_class(JOIN, v)
    protocol_type = request_class(JOIN, v, "JoinGroupRequestProtocol")
    fields = dict(group_id=group_id, session_timeout=ms(10_000), member_id="", protocol_type="consumer",
                  protocols=(protocol_type(name="range", metadata=b"subscription"),))
    if v >= 1:
        fields["rebalance_timeout"] = ms(20_000)
    if v >= 5:
        fields["group_instance_id"] = None
    response = client.call(request_type(**fields))
    if v >= 4:
        assert response.error_code == ErrorCode.member_id_required and response.member_id
        fields["member_id"] = response.member_id
        response = client.call(request_type(**fields))
    assert response.error_code == ErrorCode.none
    assert response.leader == response.member_id and response.protocol_name == "range"
    assert [(m.member_id, m.metadata) for m in response.members] == [(response.member_id, b"subscription")]
    if v >= 7:
        assert response.protocol_type == "consumer"
    return response.member_id, response.generation_id


def sync(client: WireClient, flow: int, group_id: str, member_id: str, generation: int) -> None:
    v = version(SYNC, flow)
    assignment_type = request_class(SYNC, v, "SyncGroupRequestAssignment")
    fields = dict(group_id=group_id, generation_id=generation, member_id=member_id,
                  assignments=(assignment_type(member_id=member_id, assignment=b"assigned"),))
    if v >= 3:
        fields["group_instance_id"] = None
    if v >= 5:
        fields.update(protocol_type="consumer", protocol_name="range")
    response = client.call(request_class(SYNC, v)(**fields))
    assert (response.error_code, response.assignment) == (ErrorCode.none, b"assigned")
    if v >= 5:
        assert (response.protocol_type, response.protocol_name) == ("consumer", "range")


def heartbeat(client: WireClient, flow: int, group_id: str, member_id: str, generation: int) -> None:
    v = version(HEARTBEAT, flow)
    fields = dict(group_id=group_id, generation_id=generation, member_id=member_id)
    if v >= 3:
        fields["group_instance_id"] = None
    assert client.call(request_class(HEARTBEAT, v)(**fields)).error_code == ErrorCode.none
    wrong = dict(fields, generation_id=generation + 5)
    assert client.call(request_class(HEARTBEAT, v)(**wrong)).error_code == ErrorCode.illegal_generation


def commit(client: WireClient, flow: int, group_id: str, member_id: str, generation: int) -> None:
    v = version(COMMIT, flow)
    topic_type = request_class(COMMIT, v, "OffsetCommitRequestTopic")
    partition_type = request_class(COMMIT, v, "OffsetCommitRequestPartition")
    partition_fields = dict(partition_index=1, committed_offset=100 + flow, committed_metadata=f"flow {flow}")
    if v >= 6:
        partition_fields["committed_leader_epoch"] = 4
    fields = dict(group_id=group_id, generation_id_or_member_epoch=generation, member_id=member_id,
                  topics=(topic_type(name=TOPIC, partitions=(partition_type(**partition_fields),)),))
    if v <= 4:
        fields["retention_time"] = ms(-1)
    if v >= 7:
        fields["group_instance_id"] = None
    response = client.call(request_class(COMMIT, v)(**fields))
    assert [(t.name, [(p.partition_index, p.error_code) for p in t.partitions]) for t in response.topics] == [
        (TOPIC, [(1, ErrorCode.none)])]


def fetch(client: WireClient, flow: int, group_id: str, expect_offset: int | None) -> None:
    """Fetch partition 1 explicitly (and, from v2, everything with null topics)."""
    v = version(FETCH, flow)
    explicit_topics = ((TOPIC, (1,)),)
    queries = [explicit_topics] + ([None] if v >= 2 else [])
    for topics in queries:
        partitions = _fetch_partitions(client, v, group_id, topics)
        if expect_offset is None:
            assert partitions == ([] if topics is None else [(1, -1, -1, "")])
            continue
        epoch = 4 if v >= 5 and version(COMMIT, flow) >= 6 else -1
        assert partitions == [(1, expect_offset, epoch, f"flow {flow}")]


def _fetch_partitions(client: WireClient, v: int, group_id: str, topics) -> list[tuple]:
    if v >= 8:
        group_type = request_class(FETCH, v, "OffsetFetchRequestGroup")
        topic_type = request_class(FETCH, v, "OffsetFetchRequestTopics")
        wanted = None if topics is None else tuple(topic_type(name=n, partition_indexes=p) for n, p in topics)
        response = client.call(request_class(FETCH, v)(
            groups=(group_type(group_id=group_id, topics=wanted),), require_stable=True))
        [group] = response.groups
        assert (group.group_id, group.error_code) == (group_id, ErrorCode.none)
        response_topics = group.topics
    else:
        topic_type = request_class(FETCH, v, "OffsetFetchRequestTopic")
        wanted = None if topics is None else tuple(topic_type(name=n, partition_indexes=p) for n, p in topics)
        fields = dict(group_id=group_id, topics=wanted)
        if v >= 7:
            fields["require_stable"] = True
        response = client.call(request_class(FETCH, v)(**fields))
        if v >= 2:
            assert response.error_code == ErrorCode.none
        response_topics = response.topics
    return [(p.partition_index, p.committed_offset, getattr(p, "committed_leader_epoch", -1), p.metadata)
            for t in response_topics if t.name == TOPIC for p in t.partitions if p.error_code == ErrorCode.none]


def describe(client: WireClient, flow: int, group_id: str, member_id: str) -> None:
    v = version(DESCRIBE, flow)
    fields = dict(groups=(group_id, "never-heard-of"))
    if v >= 3:
        fields["include_authorized_operations"] = True
    response = client.call(request_class(DESCRIBE, v)(**fields))
    described, unknown = response.groups
    assert (described.error_code, described.group_state, described.protocol_type, described.protocol_data) == (
        ErrorCode.none, "Stable", "consumer", "range")
    [member] = described.members
    assert (member.member_id, member.client_id, member.client_host) == (member_id, "wire-test", "/127.0.0.1")
    assert (member.member_metadata, member.member_assignment) == (b"subscription", b"assigned")
    assert (unknown.error_code, unknown.group_state, unknown.members) == (ErrorCode.none, "Dead", ())
    if v >= 3:
        assert described.authorized_operations > 0


def list_groups(client: WireClient, flow: int, group_id: str) -> None:
    v = version(LIST, flow)
    request_type = request_class(LIST, v)
    response = client.call(request_type(states_filter=("stable",)) if v >= 4 else request_type())
    assert response.error_code == ErrorCode.none
    listed = {group.group_id: group for group in response.groups}
    assert listed[group_id].protocol_type == "consumer"
    if v >= 4:
        assert {group.group_state for group in response.groups} == {"Stable"}


def leave(client: WireClient, flow: int, group_id: str, member_id: str) -> None:
    v = version(LEAVE, flow)
    if v < 3:
        response = client.call(request_class(LEAVE, v)(group_id=group_id, member_id=member_id))
        assert response.error_code == ErrorCode.none
        return
    identity = request_class(LEAVE, v, "MemberIdentity")
    members = (identity(member_id=member_id, group_instance_id=None), identity(member_id="ghost", group_instance_id=None))
    response = client.call(request_class(LEAVE, v)(group_id=group_id, members=members))
    assert response.error_code == ErrorCode.none
    assert [(m.member_id, m.error_code) for m in response.members] == [
        (member_id, ErrorCode.none), ("ghost", ErrorCode.unknown_member_id)]


def delete(client: WireClient, flow: int, group_id: str) -> None:
    v = version(DELETE, flow)
    response = client.call(request_class(DELETE, v)(groups_names=(group_id, "no-such-group")))
    assert [(r.group_id, r.error_code) for r in response.results] == [
        (group_id, ErrorCode.none), ("no-such-group", ErrorCode.group_id_not_found)]


@pytest.mark.parametrize("flow", range(FLOWS))
def test_group_lifecycle_at_each_version(broker, flow):
    group_id = f"wire-group-{flow}"
    with WireClient(broker.kafka_port) as client:
        find_coordinator(client, flow, group_id, broker.kafka_port)
        member_id, generation = join(client, flow, group_id)
        sync(client, flow, group_id, member_id, generation)
        heartbeat(client, flow, group_id, member_id, generation)
        commit(client, flow, group_id, member_id, generation)
        fetch(client, flow, group_id, 100 + flow)
        describe(client, flow, group_id, member_id)
        list_groups(client, flow, group_id)
        leave(client, flow, group_id, member_id)
        delete(client, flow, group_id)
        fetch(client, flow, group_id, None)


def test_offset_delete(broker):
    group_id = "wire-offset-delete"
    with WireClient(broker.kafka_port) as client:
        commit_type = request_class(COMMIT, 2)
        topic_type = request_class(COMMIT, 2, "OffsetCommitRequestTopic")
        partition_type = request_class(COMMIT, 2, "OffsetCommitRequestPartition")
        client.call(commit_type(group_id=group_id, generation_id_or_member_epoch=-1, member_id="",
                                retention_time=ms(-1), topics=(topic_type(name=TOPIC, partitions=(
                                    partition_type(partition_index=0, committed_offset=5, committed_metadata=None),)),)))
        delete_type = request_class(OFFSET_DELETE, 0)
        delete_topic = request_class(OFFSET_DELETE, 0, "OffsetDeleteRequestTopic")
        delete_partition = request_class(OFFSET_DELETE, 0, "OffsetDeleteRequestPartition")
        response = client.call(delete_type(group_id=group_id, topics=(
            delete_topic(name=TOPIC, partitions=(delete_partition(partition_index=0),)),
            delete_topic(name="no-such-topic", partitions=(delete_partition(partition_index=0),)))))
        assert response.error_code == ErrorCode.none
        assert [(t.name, [p.error_code for p in t.partitions]) for t in response.topics] == [
            (TOPIC, [ErrorCode.none]), ("no-such-topic", [ErrorCode.unknown_topic_or_partition])]
        missing = client.call(delete_type(group_id="nobody", topics=()))
        assert missing.error_code == ErrorCode.group_id_not_found


def test_static_member_fencing_on_the_wire(broker):
    group_id = "wire-static"
    join_type = request_class(JOIN, 7)
    protocol = request_class(JOIN, 7, "JoinGroupRequestProtocol")(name="range", metadata=b"m")
    fields = dict(group_id=group_id, session_timeout=ms(10_000), rebalance_timeout=ms(10_000), member_id="",
                  group_instance_id="instance-1", protocol_type="consumer", protocols=(protocol,))
    with WireClient(broker.kafka_port) as client:
        first = client.call(join_type(**fields))  # static members skip MEMBER_ID_REQUIRED
        assert first.error_code == ErrorCode.none
        sync_type = request_class(SYNC, 5)
        client.call(sync_type(group_id=group_id, generation_id=first.generation_id, member_id=first.member_id,
                              group_instance_id="instance-1", protocol_type="consumer", protocol_name="range",
                              assignments=()))
        second = client.call(join_type(**fields))  # the same instance restarted
        assert second.error_code == ErrorCode.none and second.member_id != first.member_id
        assert second.generation_id == first.generation_id  # no rebalance
        stale = client.call(request_class(HEARTBEAT, 4)(group_id=group_id, generation_id=first.generation_id,
                                                        member_id=first.member_id, group_instance_id="instance-1"))
        assert stale.error_code == ErrorCode.fenced_instance_id
