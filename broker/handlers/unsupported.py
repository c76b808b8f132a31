"""Answers for Kafka APIs Shoal does not serve (transactions, SASL, ACLs, delegation
tokens, KRaft/controller APIs, ...), so a client always gets a response it can decode and
report, never a dropped connection.

`error_response(header)` builds the kio response of the request's API and version with
every error_code field set to the error a Kafka broker uses when the feature is missing,
every array empty, every error_message saying so, and every other field at its default:

- SaslHandshake: UNSUPPORTED_SASL_MECHANISM (33) with an empty mechanism list (the client
  reports "broker supports: []"); SaslAuthenticate: ILLEGAL_SASL_STATE (34), as Kafka answers
  it on a listener without SASL;
- ACL APIs: SECURITY_DISABLED (54), Kafka's answer when no authorizer is configured;
- delegation tokens: DELEGATION_TOKEN_AUTH_DISABLED (61), Kafka's answer without token auth;
- everything else, including every transaction API: UNSUPPORTED_VERSION (35).

The server also uses it for a version of a served API outside our advertised range.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Any

from kio.schema.errors import ErrorCode
from kio.serial._introspect import EntityField, classify_field, get_field_tag, is_optional

from broker.protocol.messages import RequestHeader, response_type

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
ACL_APIS = (29, 30, 31)  # DescribeAcls, CreateAcls, DeleteAcls
DELEGATION_TOKEN_APIS = (38, 39, 40, 41)  # Create, Renew, Expire, Describe

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def error_for(api_key: int) -> ErrorCode:
    if api_key == SASL_HANDSHAKE:
        return ErrorCode.unsupported_sasl_mechanism
    if api_key == SASL_AUTHENTICATE:
        return ErrorCode.illegal_sasl_state
    if api_key in ACL_APIS:
        return ErrorCode.security_disabled
    if api_key in DELEGATION_TOKEN_APIS:
        return ErrorCode.delegation_token_auth_disabled
    return ErrorCode.unsupported_version


def error_response(header: RequestHeader) -> Any | None:
    """The error response for this request, or None when kio has no schema for its API
    version (the server then closes the connection)."""
    try:
        response_class = response_type(header.api_key, header.api_version)
    except Exception:
        return None
    error = error_for(header.api_key)
    message = f"{header.api_name} is not supported by Shoal"
    return _default_entity(response_class, error, message)


def _default_entity(entity_type: type, error: ErrorCode, message: str) -> Any:
    values = {field.name: _default_value(field, error, message) for field in dataclasses.fields(entity_type)}
    return entity_type(**values)


def _default_value(field: dataclasses.Field, error: ErrorCode, message: str) -> Any:
    kafka_type = field.metadata.get("kafka_type")
    if kafka_type == "error_code":
        return error
    field_class = classify_field(field)
    if field_class.is_array:
        return ()
    if field.name == "error_message":
        return message
    if field.default is not dataclasses.MISSING:
        return field.default
    if isinstance(field_class, EntityField):
        if is_optional(field) and get_field_tag(field) is None:
            return None
        return _default_entity(field_class.type_, error, message)
    if is_optional(field):
        return None
    return _primitive_default(kafka_type)


def _primitive_default(kafka_type: str | None) -> Any:
    if kafka_type in ("string",):
        return ""
    if kafka_type in ("bytes", "records"):
        return b""
    if kafka_type == "bool":
        return False
    if kafka_type == "uuid":
        return uuid.UUID(int=0)
    if kafka_type in ("timedelta_i32", "timedelta_i64"):
        return datetime.timedelta(0)
    if kafka_type == "datetime_i64":
        return _EPOCH
    if kafka_type == "float64":
        return 0.0
    return 0
