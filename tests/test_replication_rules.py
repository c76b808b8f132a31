"""The per-partition Raft rules of broker/replication/replica.py on a real DiskPartitionLog
in external-commit mode and a simulated clock: votes only for up-to-date candidates and
once per epoch (persisted across restarts), leader stickiness, pre-votes that change
nothing, the commit rule (a majority's durable ends, and only once the leader's own-epoch
batch is in), quorum step-down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker import limits
from broker.ids import LeaderEpoch, Offset
from broker.invariant import InvariantViolation
from broker.records import NewRecord, build_batch
from broker.replication.replica import NO_LEADER, PartitionReplica, Role
from broker.storage.api import PartitionLogConfig
from broker.storage.partition_log import DiskPartitionLog


class SimulatedClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def now_ms(self) -> int:
        return self.now

    def monotonic_ms(self) -> int:
        return self.now

    async def sleep_ms(self, milliseconds: int) -> None:
        await asyncio.sleep(0)


CONFIG = PartitionLogConfig(segment_bytes=1 << 20, segment_ms=-1, retention_bytes=-1, retention_ms=-1,
                            local_retention_bytes=-1, local_retention_ms=-1, remote_storage_enable=False,
                            max_message_bytes=1 << 20, flush_fsync=True, flush_interval_ms=1000,
                            external_commit=True)


def batch(value: bytes = b"v") -> bytearray:
    return build_batch([NewRecord(None, value, timestamp_ms=1_700_000_000_000)])


async def open_replica(directory: Path, node: int, clock: SimulatedClock, replicas=(0, 1, 2)):
    log = await DiskPartitionLog.open("t", 0, directory, CONFIG, clock)
    changes: list[Role] = []
    replica = PartitionReplica("t", 0, node, list(replicas), log, clock,
                               on_role_change=lambda r: changes.append(r.role))
    return replica, log, changes


def run(coroutine):
    return asyncio.run(coroutine)


def test_votes_go_only_to_up_to_date_candidates_once_per_epoch_even_across_restarts(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = SimulatedClock()
        voter, log, _ = await open_replica(tmp_path / "voter", 1, clock)
        await log.write(batch(), leader_epoch=LeaderEpoch(0)).durable()  # voter holds offset 0, epoch 0
        assert not voter.handle_vote(2, 1, last_epoch=-1, last_offset=0).granted  # behind us
        assert voter.epoch == 1  # but the higher epoch is adopted
        assert voter.handle_vote(2, 1, last_epoch=0, last_offset=1).granted
        assert not voter.handle_vote(0, 1, last_epoch=0, last_offset=5).granted  # one vote per epoch
        await log.close()
        restarted, log, _ = await open_replica(tmp_path / "voter", 1, clock)
        assert (restarted.epoch, restarted.voted_for) == (1, 2)
        assert not restarted.handle_vote(0, 1, last_epoch=0, last_offset=5).granted
        assert restarted.handle_vote(2, 1, last_epoch=0, last_offset=1).granted  # same candidate again
        await log.close()

    run(scenario())


def test_a_replica_that_hears_its_leader_ignores_candidates_and_pre_votes_change_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = SimulatedClock()
        follower, log, _ = await open_replica(tmp_path / "f", 1, clock)
        follower.start_as_initial(0)
        follower.leader_answered()
        assert not follower.handle_vote(2, 5, last_epoch=0, last_offset=0).granted
        assert follower.epoch == 0 and follower.leader_id == 0  # sticky: nothing changed
        assert not follower.handle_prevote(2, 1, last_epoch=0, last_offset=0).granted
        clock.now += limits.election_timeout_ms_min + 1  # the leader went quiet
        answer = follower.handle_prevote(2, 1, last_epoch=0, last_offset=0)
        assert answer.granted and follower.epoch == 0 and follower.voted_for == 0
        assert follower.handle_vote(2, 1, last_epoch=0, last_offset=0).granted
        await log.close()

    run(scenario())


def test_commit_needs_a_majority_and_a_batch_of_the_leaders_own_epoch(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = SimulatedClock()
        leader, log, changes = await open_replica(tmp_path / "l", 0, clock)
        for _ in range(3):
            await log.write(batch(), leader_epoch=LeaderEpoch(0)).durable()  # an old epoch's tail
        leader.start_prevote()
        leader.prevote_received(1, 1, True, 0, NO_LEADER)
        assert leader.role is Role.CANDIDATE and leader.epoch == 1
        leader.vote_received(1, 1, True, 1, NO_LEADER)
        assert leader.role is Role.LEADER and leader.epoch_start_offset == 3
        await log.flush()  # the LEADER_CHANGE batch at offset 3 is durable here
        assert int(log.log_end_offset) == 4 and not leader.ready
        leader.follower_fetched(1, 3)  # the follower holds the old tail only
        assert int(log.high_watermark) == 0 and not leader.ready  # old-epoch entries never commit alone
        leader.follower_fetched(2, 4)
        assert int(log.high_watermark) == 4 and leader.ready and Role.LEADER in changes
        assert leader.in_sync_replicas() == [0, 2]  # node 1 is behind the high watermark
        await log.close()

    run(scenario())


def test_a_leader_without_a_majority_steps_down_and_committed_data_is_never_truncated(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = SimulatedClock()
        leader, log, _ = await open_replica(tmp_path / "l", 0, clock)
        leader.start_as_initial(0)
        assert leader.role is Role.LEADER and leader.ready
        await log.write(batch(), leader_epoch=LeaderEpoch(0)).durable()
        leader.follower_fetched(1, 1)
        assert int(log.high_watermark) == 1
        clock.now += limits.leader_quorum_timeout_ms + 1
        assert leader.leader_lost_quorum(clock.monotonic_ms())
        leader.step_down("test")
        assert leader.role is Role.FOLLOWER and leader.leader_id == NO_LEADER
        with pytest.raises(InvariantViolation):
            await log.truncate_to(Offset(0))
        await log.close()

    run(scenario())


def test_a_lone_replica_elects_itself_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = SimulatedClock()
        replica, log, _ = await open_replica(tmp_path / "solo", 0, clock, replicas=(0,))
        replica.start_prevote()
        assert replica.role is Role.LEADER and replica.epoch == 1
        await log.flush()
        replica.update_commit()
        assert replica.ready and int(log.high_watermark) == 1
        await log.close()

    run(scenario())

