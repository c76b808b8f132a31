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
# Multipart part size (S3 requires >= 5 MiB for every part but the last): one part in
# memory per upload in flight; larger parts mean fewer requests per GB.
object_multipart_part_bytes = 16 * 1024 * 1024
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

# --- Command line client (broker/cli) ------------------------------------------------
# Extra wait for an admin answer beyond --timeout before giving up: librdkafka enforces
# --timeout itself, this only catches a stuck client thread.
cli_answer_grace_seconds = 5.0
# Messages `shoal consume` takes from the client per poll (bounds memory per batch and
# how much is printed between flushes of stdout).
cli_consume_batch_messages_max = 500
# Longest single wait of `shoal consume`/`shoal produce`, so Ctrl-C, --timeout-exit and
# delivery reports are noticed quickly.
cli_poll_interval_seconds = 0.2
# Producer linger: a few ms batch stdin lines without delaying a single message noticeably.
cli_produce_linger_ms = 5
# Failed deliveries `shoal produce` prints one by one before only counting them.
cli_delivery_errors_shown_max = 10
# Fetch long-poll of `shoal consume -e`: reaching the end is noticed when a fetch comes
# back empty, so this bounds how long -e lingers after the last message.
cli_end_fetch_wait_ms = 100

# --- Local log: recovery, reads, deletion (broker/storage) --------------------------------
# Read size while scanning a segment at recovery (whole batches, CRC checked): large reads,
# few syscalls; a batch larger than this is read whole.
recovery_read_chunk_bytes = 1024 * 1024
# Read size while scanning batch headers for a fetch or a timestamp lookup: covers one
# index interval of small batches in one pread.
header_scan_chunk_bytes = 16 * 1024
# Offsets in one segment stay within a signed 32-bit delta of its base (Kafka's rule; the
# index stores u32 relative offsets).
segment_relative_offset_max = 2**31 - 1
# A segment removed by retention keeps its files this long, so fetches that already hold a
# FileRegion of it can finish (Kafka's file.delete.delay.ms).
segment_delete_delay_ms = 60_000
# Worker threads for fsyncs and index writes, shared by all partitions of a node.
fsync_threads_max = 4
# Partitions recovered in parallel at start (each scans its last segment).
partition_recovery_concurrency_max = 4

# --- Idempotent producers (broker/producer_state.py) -----------------------------------
# Producer ids are handed out from blocks persisted before use: a restart (even after
# kill -9) skips the rest of the current block and never hands out an id twice.
producer_id_block_size = 1000
# Kafka's producer.id.expiration.ms: a producer idle this long on a partition is forgotten
# (its next batch is then accepted with any sequence, KIP-360).
producer_state_expiration_ms = 86_400_000
# Producers remembered per partition (bounded memory); the least recently active goes first.
producers_per_partition_max = 10_000

# --- Fetch (broker/handlers/fetch.py, broker/fetch_waiters.py) ---------------------------
# Long-poll waiters per node; a fetch beyond this is answered at once (clients poll again).
fetch_waiters_max = 10_000

# --- Consumer group coordinator (broker/groups) ------------------------------------------
# Kafka's GroupCoordinator.NewMemberJoinTimeoutMs: a new member waiting in JoinGroup whose
# response got lost is dropped after this, so a ghost cannot stall a rebalance forever.
group_new_member_join_timeout_ms = 300_000
# How often the coordinator checks session expiry and rebalance deadlines; bounds how late
# a rebalance completes after its (initial) delay.
group_tick_interval_ms = 25
# Partitions of __consumer_offsets (Kafka: offsets.topic.num.partitions, 50 for clusters).
# Fixed once created: a group's records must always land in the same partition.
group_log_partitions = 4
# Largest batch the coordinator writes (one OffsetCommit, one group's metadata with every
# member's subscription and assignment); larger ones fail with INVALID_COMMIT_OFFSET_SIZE.
group_log_batch_bytes_max = 16 * 1024 * 1024
# Bytes read per step while replaying __consumer_offsets at start.
group_log_replay_read_bytes = 1024 * 1024

# --- Admin HTTP API ------------------------------------------------------------------
# The admin API only answers GETs and reads no bodies; should an endpoint ever read one,
# aiohttp refuses bodies larger than this with 413 (bounded memory per admin request).
admin_request_bytes_max = 64 * 1024
# Hard deadline of one object-store call (botocore's own timeouts do not cover every wait:
# a PUT to a frozen endpoint waits forever for "100 Continue"): this much time plus the
# body size at object_transfer_bytes_per_second_min.
object_request_deadline_ms = 30_000
object_transfer_bytes_per_second_min = 1024 * 1024
# TieredStorage.tick period in the running broker: how soon a sealed segment starts
# uploading (and the granularity of cloud_storage.upload_interval).
tiered_tick_interval_ms = 500

# --- __consumer_offsets cleanup (broker/groups/offsets_cleaner.py) -------------------------
# A __consumer_offsets partition is rewritten (live state re-appended as a snapshot, every
# older record deleted) only once its log holds at least this many bytes: below it the
# replay at start is cheap anyway (~8 MiB of commits replay in well under a second).
group_log_cleanup_bytes_min = 8 * 1024 * 1024
# ...and only once the log is at least this many times the size of its live state as a
# snapshot (Kafka's min.cleanable.dirty.ratio 0.5 means the same 2x): bounds the log to
# about twice its live state and the rewrite cost to one snapshot per doubling.
group_log_cleanup_growth_ratio = 2
# One partition's log size is checked per this interval (round-robin): a tick costs one
# partition's segment list at most, never a scan of every partition.
group_log_cleanup_check_interval_ms = 1_000
# Snapshot records go into batches of at most this many key + value bytes: bounded batch
# allocations for a large partition, and well below group_log_batch_bytes_max.
group_log_snapshot_batch_bytes = 1024 * 1024

# --- Tiered storage: reads and DeleteRecords on the cold tier (shadow_indexing/, tiered/) ---
# One remote read or cold-tier ListOffsets lookup gives up after this long (a frozen bucket
# becomes KAFKA_STORAGE_ERROR for that partition, which clients retry) so the answer
# arrives well inside clients' request timeouts (30 s in Java and librdkafka).
remote_read_deadline_ms = 10_000
# DeleteRecords on a remote-enabled topic waits this long for the bucket's manifest to
# take the new start offset before answering KAFKA_STORAGE_ERROR (the archiver keeps
# trying in the background; reads below the offset are refused meanwhile).
remote_delete_records_wait_ms = 10_000
# Upload rounds (each up to upload_segments_per_tick_max segments and one manifest write)
# one partition runs back to back within one tick while a backlog remains: a backlog of
# small segments drains at upload speed, not at one round per tiered_tick_interval_ms.
upload_rounds_per_tick_max = 8

# --- Kafka connections: pipelined requests (broker/server.py) -------------------------------
# Frame bytes held by one connection's in-flight requests (started, response not written).
# With connection_inflight_requests_max pipelined produce requests of up to 1 MiB each
# (librdkafka's and Java's batch sizes) a connection stays within it; beyond it the
# connection stops reading until responses are written. One request is always let in,
# whatever its size (request_frame_bytes_max bounds that).
connection_inflight_bytes_max = 32 * 1024 * 1024

# --- Partition replication (broker/replication/) --------------------------------------------
# A follower that has not had an answer from its leader for a random time in this range
# starts an election (randomized so two followers rarely stand at once). The upper bound
# plus one vote round and a metadata refresh keeps failover inside ~5 s.
election_timeout_ms_min = 1_500
election_timeout_ms_max = 3_000
# A leader that has not heard from a majority (itself included) for this long steps down:
# a leader cut off from its peers stops taking writes it could never commit.
leader_quorum_timeout_ms = 4_500
# Followers long-poll their leader with this max wait: the leader hears from every live
# follower at least this often, so its quorum check never fires on a quiet partition.
replica_fetch_wait_ms = 500
# One follower fetch asks for at most this many bytes in all, and per partition: batches
# of a busy leader arrive in pipelined chunks, memory per fetch stays bounded.
replica_fetch_bytes_max = 16 * 1024 * 1024
replica_fetch_partition_bytes_max = 4 * 1024 * 1024
# Largest response frame a node accepts from a peer (a fetch of replica_fetch_bytes_max
# plus envelope).
peer_response_bytes_max = 64 * 1024 * 1024
# Vote and BeginQuorumEpoch calls give up after this long (an election then times out and
# is retried with a new random timeout).
peer_request_timeout_ms = 1_000

# --- Local log: leader epochs and replication primitives (broker/storage/) ------------------
# A leader-epoch-checkpoint larger than this is damaged, not read (recovery rebuilds it from
# the batch headers). One line (~25 bytes) per epoch change, and every epoch change rolls
# a segment, so this covers ~40,000 segments' worth of epochs.
leader_epoch_checkpoint_bytes_max = 1024 * 1024
# acks=all waits at most this long for a majority when the request gives no timeout
# (Produce's timeout_ms is used otherwise, capped by it).
produce_commit_wait_ms_default = 30_000
# Replication timers (elections, quorum checks, fetch loops to start) run this often.
replication_tick_interval_ms = 50
# A node waiting for a majority of the controller group logs progress this often.
cluster_join_progress_ms = 5_000
# A new partition leader retries recording itself in the controller this many times
# (Metadata on other nodes points at the old leader meanwhile; clients retry on error 6).
record_leader_attempts_max = 50
