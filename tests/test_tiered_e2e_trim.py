"""End to end through a real `shoal start` node on a real S3 endpoint (moto_server): the
cold tier loses exactly what it should. Remote retention (retention.bytes, retention.ms)
and DeleteRecords move the partition's start in the manifest, remove the objects wholly
below it and nothing else, and ListOffsets earliest, Fetch and consumers follow."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from kio.schema.errors import ErrorCode

from tests.test_protocol_broker import fetch_request
from tests.test_tiered_e2e import (
    SEGMENT_BYTES, TOPIC_CONFIGS, consume_all, create_topic, produce, start_broker, tiered_status, wait_archived,
    wait_for,
)
from tests.tiered_support import moto_s3  # noqa: F401  (fixture)
from tests.wire_client import WireClient
from tiered.layout import parse_segment_key, partition_manifest_key
from tiered.manifest import PartitionManifest

PREFIX = "shoal"  # MotoServer.yaml_section's default key prefix


def bucket_manifest(server, bucket: str, topic: str, partition: int = 0) -> PartitionManifest:
    body = server.client().get_object(Bucket=bucket, Key=f"{PREFIX}/{partition_manifest_key(topic, partition)}")
    return PartitionManifest.from_json(body["Body"].read())


def bucket_keys(server, bucket: str) -> set[str]:
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{PREFIX}/")
    return {item["Key"][len(PREFIX) + 1:] for page in pages for item in page.get("Contents", [])}


def segment_objects_of(keys: set[str], topic: str) -> set[str]:
    return {key for key in keys if (parsed := parse_segment_key(key)) is not None and parsed.topic == topic}


def low_watermark(broker, topic: str, partition: int = 0) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[0]
    finally:
        consumer.close()


def assert_bucket_holds_exactly(server, bucket: str, manifest: PartitionManifest) -> None:
    """Every object of every manifest segment is there, and no other segment object of the topic."""
    referenced = {key for segment in manifest.segments for key in segment.object_keys()}
    wait_for(lambda: segment_objects_of(bucket_keys(server, bucket), manifest.topic) == referenced,
             f"bucket objects of {manifest.topic} differ from its manifest", timeout_s=15)


def test_remote_retention_deletes_what_it_should_and_no_more(tmp_path, moto_s3):
    bucket = moto_s3.new_bucket()
    broker = start_broker(tmp_path / "node", moto_s3.yaml_section(bucket, upload_interval="1s"))
    retention_bytes = 6 * SEGMENT_BYTES
    try:
        create_topic(broker, "sized", configs={**TOPIC_CONFIGS, "retention.bytes": str(retention_bytes)})
        create_topic(broker, "aged", configs={**TOPIC_CONFIGS, "retention.ms": str(3_600_000)})
        sized = produce(broker, "sized", 2000, 1000)
        now_ms = int(time.time() * 1000)
        produce(broker, "aged", 600, 1000, base_time_ms=now_ms - 2 * 3_600_000)  # past retention.ms
        recent = produce(broker, "aged", 600, 1000, base_time_ms=now_ms - 600_000)
        wait_archived(broker, "sized", 1)
        wait_archived(broker, "aged", 1)

        # retention.bytes: what remains still holds retention.bytes; without its oldest
        # segment it would not (Kafka's rule, over both tiers; all of it is archived now)
        wait_for(lambda: bucket_manifest(moto_s3, bucket, "sized").size_bytes - 2 * SEGMENT_BYTES < retention_bytes,
                 "retention.bytes never applied")
        manifest = bucket_manifest(moto_s3, bucket, "sized")
        assert manifest.size_bytes >= retention_bytes
        assert manifest.size_bytes - manifest.segments[0].size_bytes < retention_bytes
        assert manifest.start_offset == manifest.segments[0].base_offset > 0
        assert manifest.last_offset == len(sized) - 1
        for earlier, later in zip(manifest.segments, manifest.segments[1:]):
            assert later.base_offset == earlier.last_offset + 1
        assert_bucket_holds_exactly(moto_s3, bucket, manifest)
        assert low_watermark(broker, "sized") == manifest.start_offset
        kept = {key: value for key, value in sized.items() if key[1] >= manifest.start_offset}
        assert consume_all(broker, "sized", len(kept)) == kept

        # retention.ms: every segment whose newest record is older goes; the one holding
        # the first recent record (and everything after) stays
        first_recent = min(offset for (_, offset) in recent)
        wait_for(lambda: bucket_manifest(moto_s3, bucket, "aged").start_offset > 0, "retention.ms never applied")
        aged = bucket_manifest(moto_s3, bucket, "aged")
        assert aged.segments[0].base_offset <= first_recent <= aged.segments[0].last_offset
        assert aged.start_offset == aged.segments[0].base_offset
        assert aged.last_offset == first_recent + len(recent) - 1
        assert_bucket_holds_exactly(moto_s3, bucket, aged)
        assert low_watermark(broker, "aged") == aged.start_offset
    finally:
        broker.stop()
        broker.kill()


def fetch_error(broker, topic: str, offset: int) -> int:
    with WireClient(broker.kafka_port) as client:
        response = client.call(fetch_request(12, topic, offset))
    return response.responses[0].partitions[0].error_code


def delete_records(broker, topic: str, offset: int) -> int:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.delete_records([TopicPartition(topic, 0, offset)], request_timeout=30)
    return next(iter(futures.values())).result(timeout=30).low_watermark


def test_delete_records_moves_the_cold_tier_start(tmp_path, moto_s3):
    bucket = moto_s3.new_bucket()
    broker = start_broker(tmp_path / "node", moto_s3.yaml_section(bucket, upload_interval="1s"))
    try:
        create_topic(broker, "trimmed")
        produced = produce(broker, "trimmed", 3000, 500)
        wait_archived(broker, "trimmed", 1)
        wait_for(lambda: tiered_status(broker, "trimmed")[0]["local_start_offset"] > 1000,
                 "local retention never dropped the archived history")
        before = bucket_manifest(moto_s3, bucket, "trimmed")

        # an offset only in the bucket: the local log has nothing to delete, the cold tier does
        cut = before.segments[3].base_offset + 7
        assert delete_records(broker, "trimmed", cut) == cut
        after = bucket_manifest(moto_s3, bucket, "trimmed")  # written before the answer
        assert after.start_offset == cut and after.segments == before.segments[3:]
        assert_bucket_holds_exactly(moto_s3, bucket, after)
        assert fetch_error(broker, "trimmed", cut - 1) == ErrorCode.offset_out_of_range
        assert fetch_error(broker, "trimmed", cut) == ErrorCode.none
        assert low_watermark(broker, "trimmed") == cut
        kept = {key: value for key, value in produced.items() if key[1] >= cut}
        assert consume_all(broker, "trimmed", len(kept)) == kept

        # an offset in the local log: both tiers start there
        local_start = tiered_status(broker, "trimmed")[0]["local_start_offset"]
        second_cut = local_start + 11
        assert delete_records(broker, "trimmed", second_cut) == second_cut
        trimmed = bucket_manifest(moto_s3, bucket, "trimmed")
        assert trimmed.start_offset == second_cut
        assert all(segment.last_offset >= second_cut for segment in trimmed.segments)
        assert_bucket_holds_exactly(moto_s3, bucket, trimmed)
        assert fetch_error(broker, "trimmed", second_cut - 1) == ErrorCode.offset_out_of_range
        assert low_watermark(broker, "trimmed") == second_cut
    finally:
        broker.stop()
        broker.kill()
