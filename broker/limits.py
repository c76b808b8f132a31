"""Every limit in one place, named with its unit, with the reason beside it.

Queues, buffers and loops are bounded by these; change one here and the code follows.
"""

# --- Kafka protocol ---------------------------------------------------------------
# Kafka's socket.request.max.bytes default; a frame larger than this closes the connection.
request_frame_bytes_max = 100 * 1024 * 1024
# Requests read ahead per connection before we stop reading the socket (Kafka processes
# one at a time per connection and keeps responses in order).
connection_inflight_requests_max = 32
# Fetch long-poll ceiling regardless of what the client asks (Kafka caps via request timeout).
fetch_wait_ms_max = 30_000
# Response size cap for one Fetch regardless of fetch.max.bytes (Kafka default 50 MiB).
fetch_response_bytes_max = 55 * 1024 * 1024
# Client ids longer than this are truncated in logs and metrics labels.
client_id_chars_max = 256
# Open connections per node; beyond this new ones are accepted then closed at once.
connections_max = 10_000

# --- Record batches ---------------------------------------------------------------
# Kafka default message.max.bytes (1 MiB + overhead).
message_bytes_default = 1_048_588
# Largest max.message.bytes a topic may set (bounded memory per produce).
message_bytes_max = 64 * 1024 * 1024
# Uncompressed size allowed when we must decompress a batch (zip-bomb guard).
decompressed_batch_bytes_max = 256 * 1024 * 1024

# --- Local log ----------------------------------------------------------------------
segment_bytes_default = 128 * 1024 * 1024
segment_bytes_min = 1024  # tests use tiny segments; Kafka's floor is 14 bytes of header
segment_ms_default = 7 * 24 * 3600 * 1000
# One sparse offset/time index entry per this many log bytes (Kafka index.interval.bytes).
index_interval_bytes = 4096
# Group commit: fsync at most this long after the first unsynced append...
flush_delay_ms_max = 2
# ...or as soon as this many bytes are unsynced, whichever comes first.
flush_pending_bytes_max = 4 * 1024 * 1024
# Retention / roll checks run on this tick.
housekeeping_interval_ms = 1_000

# --- Topics ---------------------------------------------------------------------------
partitions_per_topic_max = 10_000
topic_name_chars_max = 249  # Kafka's limit

# --- Consumer groups ------------------------------------------------------------------
group_initial_rebalance_delay_ms_default = 3_000  # Kafka group.initial.rebalance.delay.ms
group_min_session_timeout_ms = 6_000
group_max_session_timeout_ms = 1_800_000
group_members_max = 10_000
offset_metadata_chars_max = 4096  # Kafka offset.metadata.max.bytes

# --- Producers -------------------------------------------------------------------------
# Kafka keeps the last 5 batches per producer for retry deduplication.
producer_inflight_batches_max = 5
producer_ids_max = 1_000_000

# --- Tiered storage -----------------------------------------------------------------
upload_concurrency_max = 4
upload_retry_backoff_ms_max = 30_000
remote_chunk_bytes_default = 1024 * 1024
remote_cache_bytes_default = 1024 * 1024 * 1024

# --- Tiered storage: object store, archiver, remote reads (tiered/, shadow_indexing/) ---
# Objects up to this size go up in one PUT; larger ones use multipart (bounds the bytes an
# upload holds in memory, and a failed part is retried alone).
object_multipart_threshold_bytes = 16 * 1024 * 1024
# Multipart part size (S3 requires >= 5 MiB for every part but the last).
object_multipart_part_bytes = 8 * 1024 * 1024
# One S3 request may take this long to connect / to answer before it counts as failed, so
# a frozen endpoint turns into retries with backoff instead of a stuck archiver.
object_connect_timeout_ms = 5_000
object_read_timeout_ms = 20_000
# Keys per LIST page (S3's own maximum).
object_list_page_keys_max = 1000
# Sealed segments one partition uploads per tick before committing them in one manifest
# update (fewer manifest PUTs per GB, bounded work per tick).
upload_segments_per_tick_max = 8
# First retry delay after a failed upload or manifest write; doubles up to
# upload_retry_backoff_ms_max.
upload_retry_backoff_ms_min = 100
# A partition manifest larger than this many segments is refused (JSON size and parse time
# stay bounded; raise segment.bytes instead of piling up tiny objects).
manifest_segments_max = 200_000
# Objects not referenced by a manifest are deleted only when older than this, so an
# upload in flight (object written, manifest not yet) is never swept.
orphan_grace_ms_default = 3_600_000
# How often the node lists the bucket to sweep orphans (restarts always sweep once).
orphan_sweep_interval_ms_default = 6 * 3_600_000
# Uncompressed bytes per compressed frame in a zstd/lz4 segment object: the unit of a
# ranged read of a compressed segment (and of the chunk cache for it).
compression_frame_bytes = 1024 * 1024
# Chunks read ahead of a sequential remote reader (per partition).
remote_prefetch_chunks_default = 2
# Background prefetches in flight per node.
remote_prefetch_inflight_max = 8
# Remote segments one remote read may span before returning what it has.
remote_read_segments_max = 16
