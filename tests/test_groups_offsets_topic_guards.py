"""Guards on __consumer_offsets against a real broker with real clients: nobody but the
group coordinator changes it. CreatePartitions and (Incremental)AlterConfigs get
INVALID_REQUEST, Produce INVALID_TOPIC_EXCEPTION (Kafka's answer), and the topic keeps its
partition count, its configs and its log end."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions)

from broker import limits

OFFSETS_TOPIC = "__consumer_offsets"
REQUEST_TIMEOUT_S = 10


def admin_for(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10_000})


def partition_count(admin: AdminClient) -> int:
    return len(admin.list_topics(OFFSETS_TOPIC, timeout=REQUEST_TIMEOUT_S).topics[OFFSETS_TOPIC].partitions)


def retention_ms(admin: AdminClient) -> str:
    resource = ConfigResource(ConfigResource.Type.TOPIC, OFFSETS_TOPIC)
    (future,) = admin.describe_configs([resource], request_timeout=REQUEST_TIMEOUT_S).values()
    return future.result()["retention.ms"].value


def error_of(future) -> KafkaError:
    with pytest.raises(KafkaException) as raised:
        future.result()
    return raised.value.args[0]


def log_ends(broker) -> list[int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "guard-probe"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(OFFSETS_TOPIC, partition), timeout=REQUEST_TIMEOUT_S)[1]
                for partition in range(limits.group_log_partitions)]
    finally:
        consumer.close()


def test_create_partitions_on_the_offsets_topic_is_refused(broker):
    admin = admin_for(broker)
    for validate_only in (True, False):
        futures = admin.create_partitions([NewPartitions(OFFSETS_TOPIC, limits.group_log_partitions + 2)],
                                          validate_only=validate_only, request_timeout=REQUEST_TIMEOUT_S)
        error = error_of(futures[OFFSETS_TOPIC])
        assert error.code() == KafkaError.INVALID_REQUEST and "cannot be changed" in error.str()
    assert partition_count(admin) == limits.group_log_partitions


def test_altering_the_offsets_topics_configs_is_refused(broker):
    admin = admin_for(broker)
    legacy = ConfigResource(ConfigResource.Type.TOPIC, OFFSETS_TOPIC, set_config={"retention.ms": "1000"})
    error = error_of(next(iter(admin.alter_configs([legacy], request_timeout=REQUEST_TIMEOUT_S).values())))
    assert error.code() == KafkaError.INVALID_REQUEST and "managed by Shoal" in error.str()
    incremental = ConfigResource(ConfigResource.Type.TOPIC, OFFSETS_TOPIC, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    futures = admin.incremental_alter_configs([incremental], request_timeout=REQUEST_TIMEOUT_S)
    assert error_of(next(iter(futures.values()))).code() == KafkaError.INVALID_REQUEST
    assert retention_ms(admin) == "-1"


def test_clients_cannot_produce_to_the_offsets_topic(broker):
    ends_before = log_ends(broker)
    delivery_errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.send.max.retries": 0})
    producer.produce(OFFSETS_TOPIC, key=b"forged", value=b"offset", partition=0,
                     on_delivery=lambda error, message: delivery_errors.append(error))
    assert producer.flush(REQUEST_TIMEOUT_S) == 0
    assert [error.code() for error in delivery_errors] == [KafkaError.TOPIC_EXCEPTION]
    assert log_ends(broker) == ends_before
    # (kafka-python refuses internal topics itself, before any request; the broker's answer
    # on the wire is also checked in test_protocol_broker.py)
