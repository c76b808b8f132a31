"""The Kafka listener: asyncio connections around the sans-io protocol layer.

Each connection processes its requests one at a time, in order, like Kafka (which mutes
a channel until its response is sent); a malformed frame closes only that connection."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Any

from kio.schema.index import api_key_map

from broker.handlers import registry
from broker.handlers.api_versions import unsupported_version_response
from broker.handlers.context import CLOSE_CONNECTION, NO_RESPONSE, ConnectionInfo, EncodedResponse, RequestContext
from broker.protocol.framing import FrameDecoder, FrameError, frame
from broker.protocol.messages import (
    API_VERSIONS_KEY, MalformedRequest, RequestHeader, decode_request, encode_response,
    encode_response_header, parse_request_header)

log = logging.getLogger("shoal.kafka")

_READ_CHUNK_BYTES = 256 * 1024


class KafkaServer:
    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._server: asyncio.AbstractServer | None = None
        self._connection_ids = itertools.count(1)
        self._connections: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve_connection, host, port, reuse_address=True)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        connection = ConnectionInfo(peer=f"{peer[0]}:{peer[1]}" if peer else "?",
                                    connection_id=next(self._connection_ids))
        probe = self.broker.probe
        probe.connections.inc()
        decoder = FrameDecoder()
        try:
            while True:
                data = await reader.read(_READ_CHUNK_BYTES)
                if not data:
                    return
                probe.bytes_received.inc(len(data))
                decoder.receive_data(data)
                while (request_frame := decoder.next_frame()) is not None:
                    if not await self._answer(request_frame, connection, writer):
                        return
        except FrameError as error:
            probe.malformed_frames.inc()
            log.warning("closing connection %s: %s", connection.peer, error)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            probe.connections.dec()
            self._connections.discard(task)
            writer.close()

    async def _answer(self, request_frame: bytes, connection: ConnectionInfo,
                      writer: asyncio.StreamWriter) -> bool:
        """Handle one request and write its response. False closes the connection."""
        try:
            header = parse_request_header(request_frame)
        except MalformedRequest as error:
            self.broker.probe.malformed_frames.inc()
            log.warning("closing connection %s: %s", connection.peer, error)
            return False
        module = registry.handler_for(header.api_key, header.api_version)
        if module is None:
            return await self._answer_unsupported(header, connection, writer)
        try:
            request = decode_request(header, request_frame)
        except (MalformedRequest, Exception) as error:
            self.broker.probe.malformed_frames.inc()
            log.warning("closing connection %s: malformed %s v%d: %s", connection.peer,
                        header.api_name, header.api_version, error)
            return False
        context = RequestContext(self.broker, header, connection)
        started = time.perf_counter()
        try:
            response = await module.handle(context, request)
        except Exception:
            self.broker.probe.request_errors.labels(header.api_name).inc()
            log.exception("%s v%d from %s failed; closing the connection", header.api_name,
                          header.api_version, connection.peer)
            return False
        self.broker.probe.requests.labels(header.api_name).inc()
        self.broker.probe.request_latency.labels(header.api_name).observe(time.perf_counter() - started)
        if response is NO_RESPONSE:
            return True
        if response is CLOSE_CONNECTION:
            log.info("closing connection %s after a failed %s without response", connection.peer, header.api_name)
            return False
        await self._write(writer, header, response)
        return True

    async def _answer_unsupported(self, header: RequestHeader, connection: ConnectionInfo,
                                  writer: asyncio.StreamWriter) -> bool:
        if header.api_key == API_VERSIONS_KEY:
            body = encode_response(API_VERSIONS_KEY, 0, header.correlation_id, unsupported_version_response())
            await self._send(writer, frame(body))
            return True
        from broker.handlers import unsupported

        response = unsupported.error_response(header) if header.api_key in api_key_map else None
        if response is None:
            log.warning("closing connection %s: unsupported %s v%d", connection.peer,
                        header.api_name, header.api_version)
            return False
        await self._write(writer, header, response)
        return True

    async def _write(self, writer: asyncio.StreamWriter, header: RequestHeader, response: Any) -> None:
        if isinstance(response, EncodedResponse):
            response_header = encode_response_header(header.api_key, header.api_version, header.correlation_id)
            size = len(response_header) + response.size
            writer.write(size.to_bytes(4, "big", signed=True) + response_header)
            for part in response.parts:
                if isinstance(part, (bytes, bytearray, memoryview)):
                    writer.write(part)
                else:
                    await self._send_file_region(writer, part)
            self.broker.probe.bytes_sent.inc(4 + size)
            await writer.drain()
            return
        body = encode_response(header.api_key, header.api_version, header.correlation_id, response)
        await self._send(writer, frame(body))

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.broker.probe.bytes_sent.inc(len(data))
        await writer.drain()

    async def _send_file_region(self, writer: asyncio.StreamWriter, region: Any) -> None:
        """Zero-copy when the transport allows it (loop.sendfile), else pread + write."""
        await writer.drain()
        loop = asyncio.get_running_loop()
        try:
            with open(region.path, "rb") as file:
                try:
                    await loop.sendfile(writer.transport, file, region.position, region.length, fallback=True)
                except NotImplementedError:  # uvloop has no sendfile: copy in chunks
                    await _copy_region(writer, file.fileno(), region.position, region.length)
        except FileNotFoundError:
            # Segment deleted by retention between read() and send: the frame length is
            # already promised, so the connection cannot continue.
            raise ConnectionError(f"segment {region.path} vanished while sending")


async def _copy_region(writer: asyncio.StreamWriter, descriptor: int, position: int, length: int) -> None:
    """pread + write in bounded chunks, waiting for the socket between chunks."""
    end = position + length
    while position < end:
        chunk = os.pread(descriptor, min(_READ_CHUNK_BYTES * 4, end - position), position)
        if not chunk:
            raise ConnectionError("segment shorter than the region promised to the client")
        writer.write(chunk)
        position += len(chunk)
        await writer.drain()
