"""Invariant checks that `python -O` never strips.

A broker that continues after corrupting a log is worse than one that stops, so a failed
invariant raises `InvariantViolation` (derived from BaseException-free RuntimeError so it
is logged loudly by the task that hit it) instead of being an `assert`.
"""


class InvariantViolation(RuntimeError):
    """An internal invariant did not hold: a bug, never a client error."""


def invariant(condition: object, message: str, *details: object) -> None:
    """Raise InvariantViolation with `message` (and details) unless `condition` holds."""
    if not condition:
        if details:
            message = message + ": " + ", ".join(repr(detail) for detail in details)
        raise InvariantViolation(message)
