"""The ONE predicate that decides whether a read goes to the local log or to the bucket.

Fetch, ListOffsets and every other reader call this and nothing else: data at or above
the local log start offset is read locally (even when it is also archived, because local
is faster), data below it comes from the cold tier when the topic has remote storage.
"""

from __future__ import annotations

from broker.ids import Offset


def may_read_from_cloud(offset: Offset | int, local_log_start_offset: Offset | int,
                        remote_storage_enable: bool = True) -> bool:
    """True when `offset` must be served by shadow_indexing.RemoteReader."""
    return remote_storage_enable and offset < local_log_start_offset
