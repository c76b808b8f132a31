"""Controller limits and Raft timing, named with their units, each with its reason.

(They belong with the others in broker/limits.py; they live here until the controller is
wired into the Broker.)

pysyncobj's SyncObjConf.validate() requires election_timeout_min > 3 x
append_entries_period and connection_timeout >= election_timeout_max.
"""

# pysyncobj runs with autoTick=False and is ticked from the asyncio loop this often: Raft
# messages, applies and command callbacks wait at most this long.
tick_interval_ms = 25
# Leader heartbeat (AppendEntries) period; pysyncobj's default.
append_entries_period_ms = 100
# A follower that hears no leader for a random time in [min, max] starts an election.
# Raised from pysyncobj's 400/1400 ms: the ticks share the event loop with the broker, and
# a loop stall shorter than the minimum must not depose a healthy leader.
election_timeout_min_ms = 800
election_timeout_max_ms = 2_000
# A connection with nothing received for this long is dropped (pysyncobj's default).
connection_timeout_ms = 3_500
# Reconnect attempts to a peer this often. pysyncobj's 5 s default would keep a restarted
# node out of the group for up to 5 s.
connection_retry_ms = 500
# A leader that has heard from no majority for this long steps down (pysyncobj's 30 s
# default leaves a cut-off node believing it leads for half a minute).
leader_fallback_timeout_ms = 3_000
# One node alone: nothing to wait for but its own election, so elect at once.
single_node_append_entries_period_ms = 20
single_node_election_timeout_min_ms = 70
single_node_election_timeout_max_ms = 100

# Commands queued on this node before pysyncobj forwards or appends them (QUEUE_FULL beyond).
commands_queued_max = 10_000
# A controller command that has not applied within this long fails with an unknown outcome.
call_timeout_ms_default = 10_000
# The Raft log is compacted into a snapshot after this many entries, or this long after the
# previous snapshot (pysyncobj's defaults).
log_compaction_entries_min = 5_000
log_compaction_interval_ms_min = 300_000

# Each registered node heartbeats the controller this often (a replicated command, so the
# controller leader learns of it wherever the node is).
broker_heartbeat_interval_ms = 1_000
# The controller leader fences a node whose heartbeats have not arrived for this long
# (Kafka's broker.session.timeout.ms is 9 s with 2 s heartbeats).
broker_session_timeout_ms = 6_000
# How often the controller leader looks for nodes to fence or unfence.
liveness_check_interval_ms = 250
