"""DescribeCluster (60): the cluster id, the controller and the brokers (one node until
clustering lands). Java's AdminClient 3.x uses it for describeCluster()."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from broker.handlers.admin_support import NO_THROTTLE, advertised_address, build, response_module
from broker.handlers.context import RequestContext
from broker.handlers.metadata import CLUSTER_OPERATIONS, OPERATIONS_NOT_REQUESTED

API_KEY = 60
MIN_VERSION = 0
MAX_VERSION = 1

_ENDPOINT_TYPE_BROKERS = 1


async def handle(context: RequestContext, request: Any) -> Any:
    module = response_module(API_KEY, context.api_version)
    broker = context.broker
    endpoint_type = int(getattr(request, "endpoint_type", _ENDPOINT_TYPE_BROKERS))
    if endpoint_type != _ENDPOINT_TYPE_BROKERS:
        return build(module.DescribeClusterResponse, throttle_time=NO_THROTTLE,
                     error_code=ErrorCode.unsupported_endpoint_type,
                     error_message=f"endpoint type {endpoint_type} is not served by brokers (1 = brokers)",
                     endpoint_type=endpoint_type, cluster_id=broker.cluster_id, controller_id=-1, brokers=())
    host, port = advertised_address(broker)
    node = build(module.DescribeClusterBroker, broker_id=int(broker.node_id), host=host, port=port, rack=None)
    # No ACLs yet: a client that asks may do every cluster operation (same as Metadata).
    operations = CLUSTER_OPERATIONS if request.include_cluster_authorized_operations else OPERATIONS_NOT_REQUESTED
    return build(module.DescribeClusterResponse, throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                 error_message=None, endpoint_type=_ENDPOINT_TYPE_BROKERS, cluster_id=broker.cluster_id,
                 controller_id=int(broker.node_id), brokers=(node,),
                 cluster_authorized_operations=operations)
