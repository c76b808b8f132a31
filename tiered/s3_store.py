"""S3ObjectStore: the ObjectStore interface on aioboto3. The only module that talks to S3.

Works against AWS S3 (default credential chain when no keys are configured), MinIO and any
S3-compatible endpoint (path-style addressing whenever a custom endpoint is set).
Conditional puts use If-None-Match: * and If-Match: <etag> (AWS since 2024, MinIO,
moto >= 5.0.x); a 409 ConditionalRequestConflict is reported as PreconditionFailed too, so
the caller re-reads and retries. Timeouts come from broker.limits so a frozen endpoint
becomes failed requests (retried with backoff by the archiver), never a stuck task.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Iterable

import aioboto3
import botocore.exceptions
from botocore.config import Config as BotocoreConfig

from broker import limits
from tiered.object_store import (
    ObjectInfo, ObjectNotFound, ObjectStoreError, ObjectStoreMetrics, PreconditionFailed,
    collect_parts,
)

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_DELETE_BATCH_KEYS_MAX = 1000  # S3 DeleteObjects accepts at most 1000 keys


class S3ObjectStore:
    def __init__(self, *, bucket: str, prefix: str, endpoint: str | None, region: str,
                 access_key: str | None, secret_key: str | None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.description = f"s3://{bucket}/{prefix}" + (f" at {endpoint}" if endpoint else "")
        self.metrics = ObjectStoreMetrics()
        self._session = aioboto3.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region)
        self._client_options = {
            "endpoint_url": endpoint,
            "config": BotocoreConfig(
                s3={"addressing_style": "path" if endpoint else "auto"},
                connect_timeout=limits.object_connect_timeout_ms / 1000,
                read_timeout=limits.object_read_timeout_ms / 1000,
                retries={"max_attempts": 2, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._client = None

    async def _s3(self):
        if self._client is None:
            self._exit_stack = contextlib.AsyncExitStack()
            self._client = await self._exit_stack.enter_async_context(
                self._session.client("s3", **self._client_options))
        return self._client

    def _full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _call(self, operation: str, method: str, **arguments):
        self.metrics.requests[operation] += 1
        try:
            client = await self._s3()
            async with asyncio.timeout(_deadline_s(len(arguments.get("Body", b"")))):
                return await getattr(client, method)(Bucket=self.bucket, **arguments)
        except botocore.exceptions.ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _NOT_FOUND_CODES or (status == "404" and method != "put_object"):
                raise ObjectNotFound(f"{operation} {arguments.get('Key')}") from None
            self.metrics.errors[operation] += 1
            if code in _PRECONDITION_CODES or status in ("412", "409"):
                raise PreconditionFailed(f"{operation} {arguments.get('Key')}: {code}") from None
            raise ObjectStoreError(f"{operation} {arguments.get('Key')}: {code} {error}") from error
        except (botocore.exceptions.BotoCoreError, OSError, TimeoutError) as error:
            self.metrics.errors[operation] += 1
            raise ObjectStoreError(f"{operation} {arguments.get('Key')}: "
                                   f"{str(error) or type(error).__name__}") from error

    async def _read_body(self, operation: str, response) -> bytes:
        try:
            async with asyncio.timeout(_deadline_s(response.get("ContentLength", 0))):
                async with response["Body"] as stream:
                    data = await stream.read()
        except (botocore.exceptions.BotoCoreError, OSError, TimeoutError) as error:
            self.metrics.errors[operation] += 1
            raise ObjectStoreError(f"{operation}: reading body: {error}") from error
        self.metrics.bytes_downloaded += len(data)
        return data

    async def get(self, key: str) -> bytes:
        response = await self._call("get", "get_object", Key=self._full_key(key))
        return await self._read_body("get", response)

    async def get_with_etag(self, key: str) -> tuple[bytes, str]:
        response = await self._call("get", "get_object", Key=self._full_key(key))
        return await self._read_body("get", response), response["ETag"].strip('"')

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        response = await self._call("get_range", "get_object", Key=self._full_key(key),
                                    Range=f"bytes={start}-{start + length - 1}")
        return await self._read_body("get_range", response)

    async def put(self, key: str, data: bytes) -> str:
        response = await self._call("put", "put_object", Key=self._full_key(key), Body=data)
        self.metrics.bytes_uploaded += len(data)
        return response["ETag"].strip('"')

    async def put_if_absent(self, key: str, data: bytes) -> str:
        response = await self._call("put", "put_object", Key=self._full_key(key), Body=data,
                                    IfNoneMatch="*")
        self.metrics.bytes_uploaded += len(data)
        return response["ETag"].strip('"')

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        response = await self._call("put", "put_object", Key=self._full_key(key), Body=data,
                                    IfMatch=f'"{etag.strip(chr(34))}"')
        self.metrics.bytes_uploaded += len(data)
        return response["ETag"].strip('"')

    async def put_stream(self, key: str, parts: AsyncIterator[bytes]) -> int:
        regrouped = collect_parts(parts, limits.object_multipart_threshold_bytes)
        first = await anext(regrouped, b"")
        second = await anext(regrouped, None)
        if second is None:
            await self.put(key, first)
            return len(first)
        return await self._put_multipart(key, _chain(first, second, regrouped))

    async def _put_multipart(self, key: str, pieces: AsyncIterator[bytes]) -> int:
        full_key = self._full_key(key)
        created = await self._call("multipart", "create_multipart_upload", Key=full_key)
        upload_id = created["UploadId"]
        completed, size = [], 0
        try:
            async for part in collect_parts(pieces, limits.object_multipart_part_bytes):
                number = len(completed) + 1
                response = await self._call("multipart", "upload_part", Key=full_key,
                                            UploadId=upload_id, PartNumber=number, Body=part)
                completed.append({"PartNumber": number, "ETag": response["ETag"]})
                size += len(part)
                self.metrics.bytes_uploaded += len(part)
            await self._call("multipart", "complete_multipart_upload", Key=full_key,
                             UploadId=upload_id, MultipartUpload={"Parts": completed})
        except BaseException:
            with contextlib.suppress(ObjectStoreError):
                await self._call("multipart", "abort_multipart_upload", Key=full_key,
                                 UploadId=upload_id)
            raise
        return size

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        continuation: str | None = None
        strip = len(self.prefix) + 1 if self.prefix else 0
        while True:
            arguments = {"Prefix": self._full_key(prefix), "MaxKeys": limits.object_list_page_keys_max}
            if continuation:
                arguments["ContinuationToken"] = continuation
            page = await self._call("list", "list_objects_v2", **arguments)
            for item in page.get("Contents", []):
                modified_ms = int(item["LastModified"].timestamp() * 1000)
                yield ObjectInfo(item["Key"][strip:], int(item["Size"]), modified_ms)
            if not page.get("IsTruncated"):
                return
            continuation = page.get("NextContinuationToken")

    async def delete(self, key: str) -> None:
        await self._call("delete", "delete_object", Key=self._full_key(key))

    async def delete_many(self, keys: Iterable[str]) -> None:
        pending = [self._full_key(key) for key in keys]
        for start in range(0, len(pending), _DELETE_BATCH_KEYS_MAX):
            batch = pending[start:start + _DELETE_BATCH_KEYS_MAX]
            response = await self._call("delete", "delete_objects", Delete={
                "Objects": [{"Key": key} for key in batch], "Quiet": True})
            if response.get("Errors"):
                self.metrics.errors["delete"] += 1
                raise ObjectStoreError(f"delete: {response['Errors'][:3]}")

    async def close(self) -> None:
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
        self._exit_stack, self._client = None, None


def _deadline_s(body_bytes: int) -> float:
    return (limits.object_request_deadline_ms / 1000
            + body_bytes / limits.object_transfer_bytes_per_second_min)


async def _chain(first: bytes, second: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    yield second
    async for piece in rest:
        yield piece
