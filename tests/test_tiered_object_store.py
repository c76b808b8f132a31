"""The ObjectStore contract, run against both implementations: a local directory and a
real S3 HTTP endpoint (moto_server)."""

import asyncio

import pytest

from broker import limits
from tests.tiered_support import moto_s3  # noqa: F401  (fixture)
from tiered.object_store import (
    LocalObjectStore, ObjectNotFound, PreconditionFailed, open_object_store,
)
from broker.config import CloudStorageConfig


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        store = open_object_store(CloudStorageConfig(url=f"file://{tmp_path / 'bucket'}"))
    else:
        server = request.getfixturevalue("moto_s3")
        store = open_object_store(server.cloud_config(server.new_bucket(), prefix="some/prefix"))
    yield store
    asyncio.run(store.close())


def run(coroutine):
    return asyncio.run(coroutine)


async def _collect(store, prefix):
    return [info async for info in store.list(prefix)]


def test_put_get_range_list_delete(store):
    async def scenario():
        etag = await store.put("a/b/one", b"0123456789")
        assert etag
        assert await store.get("a/b/one") == b"0123456789"
        assert await store.get_range("a/b/one", 2, 5) == b"23456"
        assert await store.get_range("a/b/one", 8, 100) == b"89"
        await store.put("a/c/two", b"x" * 3)
        await store.put("z/three", b"y")
        listed = await _collect(store, "a/")
        assert [(info.key, info.size) for info in listed] == [("a/b/one", 10), ("a/c/two", 3)]
        assert all(info.last_modified_ms > 0 for info in listed)
        await store.delete("a/b/one")
        await store.delete("a/b/one")  # absent: not an error
        with pytest.raises(ObjectNotFound):
            await store.get("a/b/one")
        await store.delete_many(["a/c/two", "z/three"])
        assert await _collect(store, "") == []
        await store.close()
    run(scenario())


def test_conditional_puts(store):
    async def scenario():
        first = await store.put_if_absent("m/manifest.json", b"v1")
        with pytest.raises(PreconditionFailed):
            await store.put_if_absent("m/manifest.json", b"v1-again")
        second = await store.put_if_match("m/manifest.json", b"v2", first)
        with pytest.raises(PreconditionFailed):
            await store.put_if_match("m/manifest.json", b"v3-stale", first)
        data, etag = await store.get_with_etag("m/manifest.json")
        assert (data, etag) == (b"v2", second)
        assert store.metrics.errors["put"] >= 2
        await store.close()
    run(scenario())


def test_put_stream_single_and_multipart(store, monkeypatch):
    monkeypatch.setattr(limits, "object_multipart_threshold_bytes", 5 * 1024 * 1024)
    monkeypatch.setattr(limits, "object_multipart_part_bytes", 5 * 1024 * 1024)
    payload = bytes(range(256)) * (11 * 1024 * 1024 // 256 + 7)

    async def pieces(data, size):
        for start in range(0, len(data), size):
            yield data[start:start + size]

    async def scenario():
        assert await store.put_stream("small", pieces(b"abc" * 1000, 1000)) == 3000
        assert await store.get("small") == b"abc" * 1000
        assert await store.put_stream("big", pieces(payload, 1024 * 1024)) == len(payload)
        assert await store.get_range("big", 6 * 1024 * 1024, 100) == payload[6 * 1024 * 1024:][:100]
        assert (await store.get("big")) == payload
        if not isinstance(store, LocalObjectStore):
            assert store.metrics.requests["multipart"] >= 4  # create, 3 parts, complete
        await store.close()
    run(scenario())


def test_requests_are_counted(store):
    async def scenario():
        await store.put("k", b"v")
        await store.get("k")
        with pytest.raises(ObjectNotFound):
            await store.get("missing")
        assert store.metrics.requests["put"] == 1
        assert store.metrics.requests["get"] == 2
        assert store.metrics.bytes_uploaded == 1
        await store.close()
    run(scenario())


def test_local_store_writes_atomically_and_rejects_escaping_keys(tmp_path):
    store = LocalObjectStore(tmp_path / "bucket")

    async def scenario():
        await store.put("dir/key", b"data")
        with pytest.raises(ValueError):
            await store.put("../outside", b"x")
        leftovers = [path.name for path in (tmp_path / "bucket" / "dir").iterdir()]
        assert leftovers == ["key"]
    run(scenario())
