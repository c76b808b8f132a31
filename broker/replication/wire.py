"""The Kafka messages replicas exchange: follower Fetch (v12, with LastFetchedEpoch so the
leader can answer DivergingEpoch), KRaft's Vote (v2, with pre-votes) and BeginQuorumEpoch
(v0), one partition per request for the latter two."""

from __future__ import annotations

import datetime
from typing import Any, Iterable, Iterator

from kio.schema.begin_quorum_epoch.v0 import request as begin_epoch
from kio.schema.fetch.v12 import request as fetch
from kio.schema.types import BrokerId, TopicName
from kio.schema.vote.v2 import request as vote
from kio.static.primitive import i32, i64

from broker import limits

FULL_FETCH_EPOCH = -1  # session_epoch -1: a full fetch without a session (KIP-227)


def fetch_request(node_id: int, replicas: Iterable[Any]) -> Any:
    """One long-poll Fetch for every partition this node follows from one leader, each
    from its log end (which the fetch loop only reaches once it is durable)."""
    by_topic: dict[str, list[Any]] = {}
    for replica in replicas:
        by_topic.setdefault(replica.topic, []).append(fetch.FetchPartition(
            partition=i32(replica.index),
            current_leader_epoch=i32(replica.epoch),
            fetch_offset=i64(int(replica.log.log_end_offset)),
            last_fetched_epoch=i32(int(replica.log.latest_epoch)),
            log_start_offset=i64(int(replica.log.log_start_offset)),
            partition_max_bytes=i32(limits.replica_fetch_partition_bytes_max)))
    return fetch.FetchRequest(
        cluster_id=None,
        replica_id=BrokerId(node_id),
        max_wait=datetime.timedelta(milliseconds=limits.replica_fetch_wait_ms),
        min_bytes=i32(1),
        max_bytes=i32(limits.replica_fetch_bytes_max),
        isolation_level=0,
        session_id=i32(0),
        session_epoch=i32(FULL_FETCH_EPOCH),
        topics=tuple(fetch.FetchTopic(topic=TopicName(topic), partitions=tuple(partitions))
                     for topic, partitions in by_topic.items()),
        forgotten_topics_data=(),
        rack_id="",
    )


def vote_request(cluster_id: str, voter: int, topic: str, index: int, candidate_epoch: int, candidate: int,
                 last_epoch: int, last_offset: int, pre_vote: bool) -> Any:
    """Vote v2 (KIP-996): a pre-vote asks "would you vote for me in candidate_epoch?"
    without changing anyone's epoch; a vote is the real request."""
    return vote.VoteRequest(cluster_id=cluster_id, voter_id=BrokerId(voter), topics=(vote.TopicData(
        topic_name=TopicName(topic), partitions=(vote.PartitionData(
            partition_index=i32(index), replica_epoch=i32(candidate_epoch), replica_id=BrokerId(candidate),
            replica_directory_id=None, voter_directory_id=None,
            last_offset_epoch=i32(last_epoch), last_offset=i64(last_offset), pre_vote=pre_vote),)),))


def begin_epoch_request(cluster_id: str, topic: str, index: int, leader: int, epoch: int) -> Any:
    return begin_epoch.BeginQuorumEpochRequest(cluster_id=cluster_id, topics=(begin_epoch.TopicData(
        topic_name=TopicName(topic), partitions=(begin_epoch.PartitionData(
            partition_index=i32(index), leader_id=BrokerId(leader), leader_epoch=i32(epoch)),)),))


def partition_results(response: Any, topic: str, index: int) -> Iterator[Any]:
    """The partition entries of a Vote / BeginQuorumEpoch response for topic-index."""
    for topic_data in response.topics:
        if topic_data.topic_name == topic:
            for partition in topic_data.partitions:
                if partition.partition_index == index:
                    yield partition
