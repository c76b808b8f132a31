"""Vote (52), v0-v2: a replica standing for election asks for this node's vote, or (v2
pre-vote, KIP-996) whether it would get it (KRaft's message, used per data partition;
broker/replication/replica.py has the rules). Node to node only: not advertised in
ApiVersions; a request naming another cluster id is refused with INCONSISTENT_CLUSTER_ID."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode
from kio.schema.types import BrokerId
from kio.static.primitive import i32

from broker.handlers.context import RequestContext
from broker.protocol.kio_build import nested
from broker.protocol.messages import response_type

API_KEY = 52
MIN_VERSION = 0
MAX_VERSION = 2
ADVERTISED = False


async def handle(context: RequestContext, request: Any) -> Any:
    response_class = response_type(API_KEY, context.api_version)
    topic_class, partition_class = nested(response_class, "TopicData"), nested(response_class, "PartitionData")
    replication = context.broker.replication
    if replication is None or request.cluster_id != context.broker.cluster_id:
        error = ErrorCode.inconsistent_cluster_id if replication is not None else ErrorCode.cluster_authorization_failed
        return _response(response_class, error, ())
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            error, epoch, leader, granted = replication.handle_vote(
                topic.topic_name, partition.partition_index, int(partition.replica_id),
                int(partition.replica_epoch), int(partition.last_offset_epoch), int(partition.last_offset),
                pre_vote=bool(getattr(partition, "pre_vote", False)))
            partitions.append(partition_class(
                partition_index=partition.partition_index, error_code=error, leader_id=BrokerId(leader),
                leader_epoch=i32(epoch), vote_granted=granted))
        topics.append(topic_class(topic_name=topic.topic_name, partitions=tuple(partitions)))
    return _response(response_class, ErrorCode.none, tuple(topics))


def _response(response_class: type, error: ErrorCode, topics: tuple) -> object:
    if "node_endpoints" in response_class.__dataclass_fields__:
        return response_class(error_code=error, topics=topics, node_endpoints=())
    return response_class(error_code=error, topics=topics)
