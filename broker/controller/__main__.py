"""Run one controller node alone, for fault tests and for looking at a controller group:

    python -m broker.controller --node-id 0 --listen 127.0.0.1:33145 \\
        --seeds 127.0.0.1:33145,127.0.0.1:33146,127.0.0.1:33147 --data-dir ./node0 \\
        [--password-env SHOAL_CLUSTER_PASSWORD] [--kafka-endpoint 127.0.0.1:9092]

It prints one JSON line per event on stdout ({"ready": ...}, {"change": ...}) and reads
JSON commands on stdin, one a line: {"id": 1, "op": "create_topic", "args": ["t", 3, 1]}
answers {"reply": 1, "result": [error, value]} (or "unavailable" with the reason). The op
"snapshot" answers the whole applied state, "status" the Raft status. EOF on stdin stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import uuid
from pathlib import Path
from types import MappingProxyType
from typing import Any

from broker.clock import SYSTEM_CLOCK
from broker.controller import controller_limits
from broker.controller.controller import Controller, ControllerUnavailable

COMMANDS = frozenset({
    "register_broker", "create_topic", "delete_topic", "add_partitions", "set_topic_configs", "elect_leader",
    "reassign_replicas", "allocate_producer_id_block", "fence_broker", "unfence_broker", "read_barrier",
})


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {"type": type(value).__name__,
                **{field.name: getattr(value, field.name) for field in dataclasses.fields(value)}}
    if isinstance(value, MappingProxyType):
        return dict(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON: {value!r}")


def emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message, default=_plain, sort_keys=True) + "\n")
    sys.stdout.flush()


async def answer(controller: Controller, request: dict) -> None:
    reply: dict[str, Any] = {"reply": request.get("id")}
    operation = request.get("op")
    try:
        if operation == "snapshot":
            reply["result"] = controller.snapshot()
        elif operation == "status":
            reply["result"] = controller.status()
        elif operation in COMMANDS:
            reply["result"] = await getattr(controller, operation)(*request.get("args", []),
                                                                   **request.get("kwargs", {}))
        else:
            reply["unknown_op"] = operation
    except ControllerUnavailable as error:
        reply.update(unavailable=error.reason, kafka_error=error.kafka_error, outcome_known=False)
    emit(reply)


async def serve(arguments: argparse.Namespace) -> None:
    password = os.environ.get(arguments.password_env) if arguments.password_env else None
    controller = Controller(arguments.node_id, arguments.listen, arguments.seeds.split(","), Path(arguments.data_dir),
                            password, SYSTEM_CLOCK, session_timeout_ms=arguments.session_timeout_ms,
                            heartbeat_interval_ms=arguments.heartbeat_interval_ms)
    controller.add_listener(lambda change: emit({"change": change}))
    await controller.start()
    emit({"started": controller.rpc_address})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task] = set()

    async def announce_ready() -> None:
        await controller.wait_ready(timeout_ms=3_600_000)
        emit({"ready": controller.status()})
        if arguments.kafka_endpoint:
            emit({"registered": (await controller.register_broker(arguments.kafka_endpoint)).error})

    pending.add(loop.create_task(announce_ready()))
    while line := await reader.readline():
        if line.strip():
            task = loop.create_task(answer(controller, json.loads(line)))
            pending.add(task)
            task.add_done_callback(pending.discard)
    for task in pending:
        task.cancel()
    await controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m broker.controller", description=__doc__.split("\n\n")[0])
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--listen", required=True, help="host:port of the Raft port")
    parser.add_argument("--seeds", default="", help="comma-separated host:port of every founding node")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--password-env", help="name of the environment variable holding the cluster password")
    parser.add_argument("--kafka-endpoint", help="register this node as a broker with this endpoint once ready")
    parser.add_argument("--session-timeout-ms", type=int, default=controller_limits.broker_session_timeout_ms)
    parser.add_argument("--heartbeat-interval-ms", type=int,
                        default=controller_limits.broker_heartbeat_interval_ms)
    arguments = parser.parse_args()
    if not arguments.seeds:
        arguments.seeds = arguments.listen
    asyncio.run(serve(arguments))


if __name__ == "__main__":
    main()
