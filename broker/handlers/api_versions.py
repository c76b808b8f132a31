"""ApiVersions (18): the advertised ranges come from the registry."""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from broker.handlers.context import RequestContext
from broker.protocol.messages import response_type

API_KEY = 18
MIN_VERSION = 0
MAX_VERSION = 4  # KIP-511 v3+ adds client software name/version


def build_response(version: int, error_code: ErrorCode = ErrorCode.none) -> Any:
    from broker.handlers.registry import supported_versions

    response_class = response_type(API_KEY, version)
    module = __import__(response_class.__module__, fromlist=["ApiVersion"])
    api_version_class = module.ApiVersion
    api_keys = tuple(
        api_version_class(api_key=key, min_version=low, max_version=high)
        for key, low, high in supported_versions()
    )
    fields: dict[str, Any] = {"error_code": error_code, "api_keys": api_keys}
    if "throttle_time" in response_class.__dataclass_fields__:
        fields["throttle_time"] = datetime.timedelta(0)
    return response_class(**fields)


def unsupported_version_response() -> Any:
    """For a request version we lack: error 35 encoded as v0 with our ranges (KIP-511)."""
    return build_response(0, ErrorCode.unsupported_version)


async def handle(context: RequestContext, request: Any) -> Any:
    return build_response(context.api_version)
