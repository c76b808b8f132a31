"""Which nodes are alive, as the controller leader sees it: a node-local timer.

Heartbeats are replicated commands, so every controller node sees each one apply; each
records the local monotonic time it did. Only the leader acts on that record, and only
through CAS commands: `fence_broker(node, incarnation, heartbeats seen)` fails if a
heartbeat applied in between, `unfence_broker` needs the same incarnation. A node that
just became leader gives every unfenced node a full session from that moment, since it
cannot know how long ago the old leader last heard from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.controller.events import BrokerChanged, StateChange


@dataclass(frozen=True)
class LivenessDecision:
    action: str  # "fence" | "unfence"
    node_id: int
    incarnation: str
    heartbeats: int  # heartbeats applied when decided (the fence CAS)


class BrokerLiveness:
    def __init__(self, session_timeout_ms: int) -> None:
        self._session_timeout_ms = session_timeout_ms
        self._last_seen_ms: dict[int, int] = {}  # local monotonic time of the last heartbeat applied
        self._in_flight: set[int] = set()

    def observe(self, change: StateChange, now_ms: int) -> None:
        if not isinstance(change, BrokerChanged):
            return
        if change.change in ("registered", "heartbeat"):
            self._last_seen_ms[change.node_id] = now_ms
        elif change.change == "fenced":
            self._last_seen_ms.pop(change.node_id, None)  # only a later heartbeat unfences it

    def start_leading(self, brokers: dict[int, dict], now_ms: int) -> None:
        for node_id, broker in brokers.items():
            if not broker["fenced"]:
                self._last_seen_ms[node_id] = now_ms
        self._in_flight.clear()

    def decide(self, brokers: dict[int, dict], now_ms: int) -> list[LivenessDecision]:
        decisions = []
        for node_id in sorted(brokers):
            if node_id in self._in_flight:
                continue
            broker = brokers[node_id]
            last_seen_ms = self._last_seen_ms.get(node_id)
            recent = last_seen_ms is not None and now_ms - last_seen_ms <= self._session_timeout_ms
            if broker["fenced"] == recent:
                action = "unfence" if recent else "fence"
                decisions.append(LivenessDecision(action, node_id, broker["incarnation"], broker["heartbeats"]))
        return decisions

    def started(self, decision: LivenessDecision) -> None:
        self._in_flight.add(decision.node_id)

    def finished(self, decision: LivenessDecision) -> None:
        self._in_flight.discard(decision.node_id)
