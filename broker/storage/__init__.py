"""The local log (hot tier): segments, indexes, group commit, retention, recovery.
The seam the rest of the broker uses is `broker.storage.api`; see README.md."""
