"""The one place the coordinator looks inside member metadata: the topic list of a
'consumer' protocol subscription (OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC, and whether a
static member's rejoin changes what it consumes). Assignors stay opaque.

Every ConsumerProtocolSubscription version (0-3) starts with an int16 version, then the
topic array then user data, so the v0 schema reads the prefix of any version."""

from __future__ import annotations

import struct

from kio.schema.consumer_protocol_subscription.v0 import ConsumerProtocolSubscription
from kio.serial import entity_reader

_read_subscription_v0 = entity_reader(ConsumerProtocolSubscription)
_VERSION = struct.Struct(">h")


def subscribed_topics(metadata: bytes) -> set[str] | None:
    """The subscribed topic names, or None if `metadata` is not a consumer subscription."""
    if len(metadata) < _VERSION.size:
        return None
    (version,) = _VERSION.unpack_from(metadata)
    if version < 0:
        return None
    try:
        subscription, _ = _read_subscription_v0(memoryview(metadata)[_VERSION.size:], 0)
    except Exception:  # kio raises assorted errors on truncated or foreign bytes
        return None
    return set(subscription.topics)
