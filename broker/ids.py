"""Distinct types for the numbers that must never be mixed up. Conversions between
them happen only here."""

from typing import NewType

Offset = NewType("Offset", int)  # Kafka offset of a record in a partition
LeaderEpoch = NewType("LeaderEpoch", int)  # partition leader epoch (Raft term)
NodeId = NewType("NodeId", int)  # broker node id from the config
ProducerId = NewType("ProducerId", int)
ProducerEpoch = NewType("ProducerEpoch", int)
PartitionId = NewType("PartitionId", int)

NO_OFFSET = Offset(-1)
NO_EPOCH = LeaderEpoch(-1)
NO_PRODUCER_ID = ProducerId(-1)


def next_offset(last_offset: Offset) -> Offset:
    return Offset(last_offset + 1)
