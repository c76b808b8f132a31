"""Strip unknown tagged fields (KIP-482) from a flexible request so kio can read it.

kio's native reader raises KeyError on a tag it does not know; newer clients add tags to
existing versions. This walks the message schema and copies the bytes, dropping tags the
schema does not declare.
"""

from __future__ import annotations


def strip_unknown_tagged_fields(request_type: type, body: bytes) -> bytes:
    # Placeholder until the schema walker lands: callers treat this as a malformed request.
    raise ValueError(f"unknown tagged field in {request_type.__name__}")
