"""JudgeAhead: batches are judged beside the caller's work and delivered on the caller's thread, in order."""

from __future__ import annotations

import threading
import time

import pytest

from adversary.judging import JudgeAhead


def test_batches_are_delivered_in_order_on_the_callers_thread_with_one_batch_ahead():
    caller = threading.get_ident()
    judged_on, delivered = [], []

    def judge(batch):
        judged_on.append(threading.get_ident())
        return [x * 10 for x in batch]

    def deliver(batch, attempts):
        assert threading.get_ident() == caller
        delivered.append((batch, attempts))

    with JudgeAhead(judge, deliver) as judging:
        for batch in ([1, 2], [], [3], [4, 5, 6]):
            judging.submit(batch)
            assert len(delivered) <= 2, "the last submitted batch is still with the judge"
    assert delivered == [([1, 2], [10, 20]), ([3], [30]), ([4, 5, 6], [40, 50, 60])]
    assert caller not in judged_on


def test_judging_overlaps_the_callers_next_batch_and_only_blocking_counts_as_waiting():
    started = threading.Event()

    def judge(batch):
        started.set()
        time.sleep(0.3)
        return batch

    judging = JudgeAhead(judge, lambda batch, attempts: None)
    judging.submit([1])
    assert started.wait(2), "the judge starts at once, on its own thread"
    time.sleep(0.3)  # the caller's own work (target calls) while the batch is judged
    began = time.perf_counter()
    judging.submit([2])  # the first batch is done by now: no wait for it
    assert time.perf_counter() - began < 0.15
    judging.close()  # waits for the second batch
    assert 0.15 < judging.waited_seconds < 0.5


def test_a_judge_failure_reaches_the_caller_and_the_batches_before_it_are_kept():
    delivered = []

    def judge(batch):
        if batch == ["bad"]:
            raise RuntimeError("judge down")
        return batch

    judging = JudgeAhead(judge, lambda batch, attempts: delivered.append(batch))
    judging.submit(["good"])
    judging.submit(["bad"])
    with pytest.raises(RuntimeError, match="judge down"):
        judging.close()
    assert delivered == [["good"]]
