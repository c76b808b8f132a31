"""Node-to-node requests over the peers' Kafka listeners: kio request objects in, kio
response objects out, pipelined on one connection per peer.

Replicas speak Kafka's own messages to each other, as Kafka brokers do: Fetch with a
replica id (followers pull), and KRaft's Vote and BeginQuorumEpoch for per-partition
elections. A call that cannot complete in time raises PeerUnavailable; the connection is
then dropped and the next call reconnects."""

from __future__ import annotations

import asyncio
import io
import logging
import struct
from typing import Any, Callable

from kio.serial import entity_reader, entity_writer

from broker import limits
from broker.protocol.framing import FrameDecoder, FrameError
from broker.protocol.messages import API_VERSIONS_KEY, is_flexible_request, response_type

log = logging.getLogger("shoal.replication")

Address = tuple[str, int]


class PeerUnavailable(Exception):
    """The peer could not be reached or did not answer in time."""


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _encode_request(request: Any, correlation_id: int, client_id: str) -> bytes:
    api_key, version = int(request.__api_key__), int(request.__version__)
    encoded_client = client_id.encode()
    header = struct.pack(">hhih", api_key, version, correlation_id, len(encoded_client)) + encoded_client
    if is_flexible_request(api_key, version):
        header += b"\x00"
    body = io.BytesIO()
    entity_writer(type(request))(body, request)
    payload = header + body.getvalue()
    return struct.pack(">i", len(payload)) + payload


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
        self._reader = reader
        self._writer = writer
        self._name = name
        self._next_id = 0
        self._waiting: dict[int, tuple[asyncio.Future, int, int]] = {}
        self._receiver = asyncio.get_running_loop().create_task(self._receive(), name=f"peer-{name}")
        self.closed = False

    async def call(self, request: Any, client_id: str) -> Any:
        self._next_id += 1
        correlation_id = self._next_id
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # a caller that timed out no longer awaits it
        self._waiting[correlation_id] = (future, int(request.__api_key__), int(request.__version__))
        self._writer.write(_encode_request(request, correlation_id, client_id))
        await self._writer.drain()
        return await future

    async def _receive(self) -> None:
        decoder = FrameDecoder(frame_bytes_max=limits.peer_response_bytes_max)
        try:
            while True:
                data = await self._reader.read(256 * 1024)
                if not data:
                    raise ConnectionError(f"{self._name} closed the connection")
                decoder.receive_data(data)
                while (payload := decoder.next_frame()) is not None:
                    self._deliver(payload)
        except (ConnectionError, OSError, FrameError, asyncio.IncompleteReadError, ValueError) as error:
            self._fail(PeerUnavailable(f"{self._name}: {error}"))
        except asyncio.CancelledError:
            self._fail(PeerUnavailable(f"{self._name}: connection closed"))
            raise

    def _deliver(self, payload: bytes) -> None:
        (correlation_id,) = struct.unpack_from(">i", payload, 0)
        waiting = self._waiting.pop(correlation_id, None)
        if waiting is None:
            raise ValueError(f"unexpected correlation id {correlation_id}")
        future, api_key, version = waiting
        offset = 4
        if api_key != API_VERSIONS_KEY and is_flexible_request(api_key, version):
            offset += 1  # response header v1: no tagged fields are sent between Shoal nodes
        try:
            response, _ = entity_reader(response_type(api_key, version))(memoryview(payload)[offset:], 0)
        except Exception as error:  # noqa: BLE001 - a peer's bad answer fails this call only
            if not future.done():
                future.set_exception(PeerUnavailable(f"{self._name}: undecodable response: {error}"))
            return
        if not future.done():
            future.set_result(response)

    def _fail(self, error: Exception) -> None:
        self.closed = True
        for future, _, _ in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()
        self._writer.close()

    async def close(self) -> None:
        self._receiver.cancel()
        await asyncio.gather(self._receiver, return_exceptions=True)


class PeerClient:
    """Calls to other nodes by node id; `address_of(node_id)` gives the Kafka listener."""

    def __init__(self, node_id: int, address_of: Callable[[int], Address | None]) -> None:
        self._client_id = f"shoal-node-{node_id}"
        self._address_of = address_of
        self._connections: dict[int, _Connection] = {}
        self._connecting: dict[int, asyncio.Task] = {}

    async def call(self, node_id: int, request: Any, timeout_ms: int) -> Any:
        try:
            return await asyncio.wait_for(self._call(node_id, request), timeout_ms / 1000)
        except asyncio.TimeoutError:
            await self._drop(node_id)
            raise PeerUnavailable(f"node {node_id} did not answer within {timeout_ms} ms") from None

    async def _call(self, node_id: int, request: Any) -> Any:
        connection = await self._connection(node_id)
        try:
            return await connection.call(request, self._client_id)
        except (ConnectionError, OSError) as error:
            await self._drop(node_id)
            raise PeerUnavailable(f"node {node_id}: {error}") from error
        except PeerUnavailable:
            await self._drop(node_id)
            raise

    async def _connection(self, node_id: int) -> _Connection:
        connection = self._connections.get(node_id)
        if connection is not None and not connection.closed:
            return connection
        pending = self._connecting.get(node_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_task(self._connect(node_id))
            pending.add_done_callback(_retrieve)
            self._connecting[node_id] = pending
            pending.add_done_callback(lambda _: self._connecting.pop(node_id, None))
        return await asyncio.shield(pending)

    async def _connect(self, node_id: int) -> _Connection:
        address = self._address_of(node_id)
        if address is None:
            raise PeerUnavailable(f"node {node_id} has no known address")
        try:
            reader, writer = await asyncio.open_connection(*address)
        except OSError as error:
            raise PeerUnavailable(f"node {node_id} at {address[0]}:{address[1]}: {error.strerror or error}") from error
        connection = _Connection(reader, writer, f"node {node_id}")
        self._connections[node_id] = connection
        return connection

    async def _drop(self, node_id: int) -> None:
        connection = self._connections.pop(node_id, None)
        if connection is not None:
            connection._fail(PeerUnavailable(f"node {node_id}: connection dropped"))
            await connection.close()

    async def close(self) -> None:
        for node_id in list(self._connections):
            await self._drop(node_id)
