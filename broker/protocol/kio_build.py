"""Building kio messages of any version from one set of values.

kio has one dataclass per message version, and fields come and go between versions.
Handlers describe a response once with every field they know; `build` keeps the fields
the version has and drops the others, so a handler serves its whole version range with
one code path."""

from __future__ import annotations

import datetime
import sys
from typing import Any

NO_THROTTLE = datetime.timedelta(0)


def build(entity_type: type, **values: Any) -> Any:
    """`entity_type(**values)` without the values this version has no field for."""
    fields = entity_type.__dataclass_fields__
    return entity_type(**{name: value for name, value in values.items() if name in fields})


def nested(entity_type: type, name: str) -> type:
    """The nested entity class `name` of the same message version as `entity_type`."""
    return getattr(sys.modules[entity_type.__module__], name)


def has_field(entity_type: type, name: str) -> bool:
    return name in entity_type.__dataclass_fields__


def milliseconds(value: datetime.timedelta | int) -> int:
    """kio decodes timedelta_i32 fields (timeouts, max_wait) as timedelta."""
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    return int(value)
