"""The cluster controller: cluster id, brokers and their liveness, topics with their
replica assignment and partition leaders, producer-id blocks, replicated by a Raft group
(pysyncobj) of the founding nodes. See README.md."""

from broker.controller.controller import (
    CommandNotApplied, CommandOutcomeUnknown, Controller, ControllerStartError, ControllerUnavailable, RaftTiming)
from broker.controller.events import CommandResult, StateChange
from broker.controller.views import BrokerView, PartitionView, TopicView

__all__ = [
    "BrokerView", "CommandNotApplied", "CommandOutcomeUnknown", "CommandResult", "Controller",
    "ControllerStartError", "ControllerUnavailable", "PartitionView", "RaftTiming", "StateChange", "TopicView",
]
