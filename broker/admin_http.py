"""The admin HTTP API (CONTRACT.md `admin_api.listen`; documented in docs/admin-api.md):

    GET /v1/status/ready     200 {"status": "ready"} once the Kafka listener and logs are up, else 503
    GET /metrics             Prometheus text (BrokerProbe.render)
    GET /v1/brokers          the nodes of the cluster
    GET /v1/cluster          cluster id, controller, brokers, topic and partition counts
    GET /v1/topics           every topic (name, id, partitions, replication factor)
    GET /v1/topics/{name}    one topic: partitions with offsets and sizes, configs with sources

Built on aiohttp's server (already in the dependency tree through aiobotocore): a
maintained HTTP/1.1 parser with keep-alive, limits and error handling we would otherwise
write by hand. Errors are JSON {"error": ..., "status": ...} with a 4xx/5xx status; a
handler failing never takes the node down. Other subsystems add endpoints with
`add_json_endpoint` (before or after start).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from broker import limits
from broker.metrics import BrokerStateCollector
from broker.topic_config import describe_topic_configs

log = logging.getLogger("shoal.admin")

JsonProducer = Callable[[web.Request], Any | Awaitable[Any]]
_PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class AdminHttpServer:
    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._runner: web.AppRunner | None = None
        self._extra_endpoints: dict[str, JsonProducer] = {}
        self._state_collector = BrokerStateCollector(broker)

    def add_json_endpoint(self, path: str, producer: JsonProducer) -> None:
        """Serve GET `path` (exact, e.g. "/v1/tiered/status") with the JSON of
        `producer(request)` (a value or an awaitable). Raise aiohttp.web.HTTPNotFound etc.
        for 4xx answers."""
        self._extra_endpoints[path] = producer

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful when port is 0)."""
        app = web.Application(middlewares=[_json_errors], client_max_size=limits.admin_request_bytes_max)
        routes = {
            "/v1/status/ready": self._ready,
            "/metrics": self._metrics,
            "/v1/brokers": self._brokers,
            "/v1/cluster": self._cluster,
            "/v1/topics": self._topics,
            "/v1/topics/{name}": self._topic,
        }
        for path, handler in routes.items():
            app.router.add_route("*", path, _get_only(handler))
        app.router.add_route("*", "/{tail:.*}", self._extra)
        self.broker.probe.add_collector(self._state_collector)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.broker.probe.remove_collector(self._state_collector)

    # -- endpoints -----------------------------------------------------------------------------

    async def _ready(self, request: web.Request) -> web.Response:
        waiting = self._waiting_for()
        if waiting:
            return web.json_response({"status": "not ready", "waiting_for": waiting}, status=503)
        return web.json_response({"status": "ready"})

    def _waiting_for(self) -> list[str]:
        broker = self.broker
        waiting = []
        if not broker.ready or broker.kafka_port is None:
            waiting.append("kafka_listener")
        if broker.topics is None or broker.logs is None:
            waiting.append("logs")
        return waiting

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.broker.probe.render(), headers={"Content-Type": _PROMETHEUS_CONTENT_TYPE})

    async def _brokers(self, request: web.Request) -> web.Response:
        return web.json_response(self._broker_entries())

    async def _cluster(self, request: web.Request) -> web.Response:
        """The cluster as this node sees it: nodes and liveness, every partition's leader
        (from the controller), under-replicated and leaderless partitions, and the state of
        the replicas this node holds."""
        broker = self.broker
        topics = broker.topics.topics() if broker.topics is not None else []
        under_replicated, leaderless = [], []
        for topic in topics:
            for index in range(topic.partitions):
                leader, _, replicas, in_sync, _ = broker.partition_metadata(topic, index)
                if leader < 0:
                    leaderless.append(f"{topic.name}-{index}")
                elif len(in_sync) < len(replicas):
                    under_replicated.append(f"{topic.name}-{index}")
        replicas = ([replica.describe() for replica in broker.replication.replicas.values()]
                    if broker.replication is not None else [])
        return web.json_response({
            "cluster_id": broker.cluster_id,
            "node_id": int(broker.node_id),
            "controller_id": broker.controller_id(),
            "controller": broker.cluster.controller.status() if broker.cluster is not None else None,
            "brokers": self._broker_entries(),
            "topics": len(topics),
            "partitions": sum(topic.partitions for topic in topics),
            "under_replicated_partitions": len(under_replicated),
            "under_replicated": under_replicated,
            "leaderless_partitions": leaderless,
            "replicas": replicas,
            "ready": not self._waiting_for(),
        })

    async def _topics(self, request: web.Request) -> web.Response:
        topics = self._topic_table().topics()
        return web.json_response([_topic_summary(topic) for topic in topics])

    async def _topic(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        topic = self._topic_table().get(name)
        if topic is None:
            raise web.HTTPNotFound(text=f"topic {name!r} does not exist")
        summary = _topic_summary(topic)
        await self.broker.topic_logs_ready(name)  # a just-created topic's logs may still be opening
        summary["partitions"] = [self._partition_entry(topic, partition) for partition in range(topic.partitions)]
        summary["configs"] = {
            description.name: {"value": None if description.sensitive else description.value,
                                "source": description.source.name}
            for description in describe_topic_configs(self.broker.config, topic.name, topic.configs)
        }
        return web.json_response(summary)

    async def _extra(self, request: web.Request) -> web.Response:
        producer = self._extra_endpoints.get(request.path)
        if producer is None:
            raise web.HTTPNotFound(text=f"no such endpoint: {request.path}")
        _require_get(request)
        value = producer(request)
        if hasattr(value, "__await__"):
            value = await value
        return web.json_response(value)

    # -- helpers -------------------------------------------------------------------------------

    def _topic_table(self) -> Any:
        if self.broker.topics is None:
            raise web.HTTPServiceUnavailable(text="the node is starting")
        return self.broker.topics

    def _broker_entries(self) -> list[dict[str, Any]]:
        from broker.handlers.admin_support import advertised_address

        broker = self.broker
        if broker.cluster is not None:
            return [{"node_id": int(node_id), "kafka_endpoint": view.kafka_endpoint, "admin_url": view.admin_url,
                     "rpc_endpoint": view.rpc_endpoint, "rack": None, "is_alive": view.alive}
                    for node_id, view in broker.cluster.controller.brokers().items()]
        host, port = advertised_address(broker)
        return [{
            "node_id": int(broker.node_id),
            "kafka_host": host,
            "kafka_port": port,
            "admin_port": broker.admin_port,
            "rack": None,
            "is_alive": True,
        }]

    def _partition_entry(self, topic: Any, partition: int) -> dict[str, Any]:
        leader, leader_epoch, replicas, in_sync, _ = self.broker.partition_metadata(topic, partition)
        entry: dict[str, Any] = {
            "partition": partition,
            "leader": leader,
            "leader_epoch": leader_epoch,
            "replicas": replicas,
            "isr": in_sync,
            "log_start_offset": None,
            "log_end_offset": None,
            "high_watermark": None,
            "local_size_bytes": None,
        }
        partition_log = self.broker.partition_log(topic.name, partition)
        if partition_log is not None:
            entry["log_start_offset"] = int(partition_log.log_start_offset)
            entry["log_end_offset"] = int(partition_log.log_end_offset)
            entry["high_watermark"] = int(partition_log.high_watermark)
            entry["local_size_bytes"] = sum(segment.size_bytes for segment in partition_log.segments())
        return entry


@web.middleware
async def _json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Every 4xx/5xx as JSON; an unexpected exception is logged and answered 500."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error(error.status, _message_of(error))
    except Exception:
        log.exception("admin request %s %s failed", request.method, request.path)
        return _error(500, "internal error; see the node's log")


def _message_of(error: web.HTTPException) -> str:
    text = error.text or ""
    if not text or text.startswith(f"{error.status}:"):  # aiohttp's default "404: Not Found"
        return error.reason
    return text


def _get_only(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable:
    async def get_only(request: web.Request) -> web.StreamResponse:
        _require_get(request)
        return await handler(request)
    return get_only


def _require_get(request: web.Request) -> None:
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"],
                                       text=f"{request.path} answers GET only")


def _topic_summary(topic: Any) -> dict[str, Any]:
    return {
        "name": topic.name,
        "topic_id": str(topic.topic_id),
        "partition_count": topic.partitions,
        "replication_factor": topic.replication_factor,
        "internal": topic.internal,
    }


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps({"error": message, "status": status}))
