"""Partition replication: Raft on each partition's segment log (see docs/replication.md)."""
