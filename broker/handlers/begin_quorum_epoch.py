"""BeginQuorumEpoch (53), v0: a newly elected partition leader tells the other replicas,
so they fetch from it at once instead of at their election timeout. Node to node only:
not advertised in ApiVersions."""

from __future__ import annotations

from typing import Any

from kio.schema.begin_quorum_epoch.v0 import response as begin_response
from kio.schema.errors import ErrorCode
from kio.schema.types import BrokerId
from kio.static.primitive import i32

from broker.handlers.context import RequestContext

API_KEY = 53
MIN_VERSION = 0
MAX_VERSION = 0
ADVERTISED = False


async def handle(context: RequestContext, request: Any) -> Any:
    replication = context.broker.replication
    if replication is None or request.cluster_id != context.broker.cluster_id:
        error = ErrorCode.inconsistent_cluster_id if replication is not None else ErrorCode.cluster_authorization_failed
        return begin_response.BeginQuorumEpochResponse(error_code=error, topics=())
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            error, leader, epoch = replication.handle_begin_epoch(
                topic.topic_name, partition.partition_index, int(partition.leader_id), int(partition.leader_epoch))
            partitions.append(begin_response.PartitionData(
                partition_index=partition.partition_index, error_code=error, leader_id=BrokerId(leader),
                leader_epoch=i32(epoch)))
        topics.append(begin_response.TopicData(topic_name=topic.topic_name, partitions=tuple(partitions)))
    return begin_response.BeginQuorumEpochResponse(error_code=ErrorCode.none, topics=tuple(topics))
