"""APIs Shoal does not serve get a decodable error response, never a dropped connection."""

from __future__ import annotations

import dataclasses

import pytest
from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader

from broker.handlers import registry
from broker.handlers.unsupported import error_for, error_response
from broker.protocol.kio_build import build
from broker.protocol.messages import RequestHeader, encode_response_body
from tests.support import BrokerProcess
from tests.wire_client import WireClient, ms, request_class


def lowest_version(api_key: int) -> int:
    return min(schema_name_map[api_key_map[api_key]])


def error_codes(entity) -> list[ErrorCode]:
    found = []
    for field in dataclasses.fields(entity):
        value = getattr(entity, field.name)
        if isinstance(value, ErrorCode):
            found.append(value)
        elif dataclasses.is_dataclass(value):
            found += error_codes(value)
    return found


@pytest.mark.parametrize("api_key", sorted(api_key_map))
def test_every_kio_api_at_its_lowest_version_gets_a_decodable_error(api_key):
    version = lowest_version(api_key)
    response = error_response(RequestHeader(api_key, version, 1, "test", 0))
    body = encode_response_body(response)
    decoded, size = entity_reader(load_response_schema(api_key, version))(body, 0)
    assert size == len(body)
    codes = error_codes(decoded)
    assert all(code == error_for(api_key) for code in codes), codes
    for field in dataclasses.fields(decoded):
        if field.name == "error_message" and decoded.error_message is not None:
            assert "not supported by Shoal" in decoded.error_message


def test_feature_specific_errors():
    assert error_for(17) == ErrorCode.unsupported_sasl_mechanism
    assert error_for(36) == ErrorCode.illegal_sasl_state
    assert error_for(29) == ErrorCode.security_disabled
    assert error_for(38) == ErrorCode.delegation_token_auth_disabled
    assert error_for(26) == ErrorCode.unsupported_version  # EndTxn
    handshake = error_response(RequestHeader(17, 1, 1, "test", 0))
    assert handshake.mechanisms == () and handshake.error_code == ErrorCode.unsupported_sasl_mechanism


def test_live_broker_answers_unsupported_apis_and_versions(tmp_path):
    broker = BrokerProcess(tmp_path / "node0").start()
    try:
        with WireClient(broker.kafka_port) as client:
            handshake = client.call(request_class(17, 1)(mechanism="SCRAM-SHA-256"))
            assert handshake.error_code == ErrorCode.unsupported_sasl_mechanism and handshake.mechanisms == ()
            end_txn = client.call(request_class(26, 0)(transactional_id="tx", producer_id=1, producer_epoch=0,
                                                       committed=True))
            assert end_txn.error_code == ErrorCode.unsupported_version
            # Fetch v13 exists in kio but is above our range: an error response, not a hang-up.
            assert registry.handler_for(1, 13) is None
            fetch_v13 = client.call(build(request_class(1, 13), replica_id=-1, max_wait=ms(0), min_bytes=1,
                                          max_bytes=1024, isolation_level=0, session_id=0, session_epoch=-1,
                                          topics=(), forgotten_topics_data=(), rack_id=""))
            assert fetch_v13.error_code == ErrorCode.unsupported_version
            # The connection is still usable afterwards.
            assert client.call(request_class(18, 0)()).error_code == ErrorCode.none
    finally:
        broker.close()
