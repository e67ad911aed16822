"""Judging finished target calls: one batch's verdicts as stored attempts, judged beside the calls still running.

`eval` and `run` send calls and judge their replies in batches. `JudgeAhead` judges a batch on a background
thread while the caller sends the next batch's calls, and hands each judged batch back to the caller's thread
in order, so the store (one SQLite connection) is written from one thread and in plan order as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from adversary.core.placement import Placement
from adversary.judges import Judge, JudgeError, JudgeInput
from adversary.models.chat import ChatResult
from adversary.records import Attempt, Message, Verdict

Item = TypeVar("Item")


@dataclass(frozen=True)
class CallOutcome:
    """A finished target call waiting for its verdict: what was sent, and the reply or the error."""

    key: str
    target: str
    placement: Placement
    trial: int
    seed: int
    messages: tuple[Message, ...]
    result: ChatResult
    fallback: str | None = None


def judged_attempts(outcomes: Sequence[CallOutcome], judge: Judge) -> list[Attempt]:
    """The stored records of finished calls, judged in one batch (the judge embeds all replies at once).
    A failed call is an error. When the batch fails, each reply is judged alone, so one reply the judge
    cannot handle becomes an error (never a verdict) without taking the others with it."""
    attempts: list[Attempt | None] = [None] * len(outcomes)
    to_judge: list[int] = []
    for index, outcome in enumerate(outcomes):
        if outcome.result.ok:
            to_judge.append(index)
        else:
            attempts[index] = _attempt(outcome, status="error", error=outcome.result.error)
    if to_judge:
        items = []
        for index in to_judge:
            messages, result = outcomes[index].messages, outcomes[index].result
            items.append(JudgeInput(system_prompt=messages[0].content, history=tuple(messages[1:-1]), user=messages[-1].content,
                                    response=result.text, fallback=outcomes[index].fallback))
        try:
            verdicts: list[Verdict | JudgeError] = list(judge.judge(items))
        except JudgeError:
            verdicts = [_judge_alone(judge, item) for item in items]
        for index, verdict in zip(to_judge, verdicts):
            reply = outcomes[index].result.text
            attempts[index] = (_attempt(outcomes[index], reply=reply, status="error", error=f"judge: {verdict}")
                               if isinstance(verdict, JudgeError) else _attempt(outcomes[index], reply=reply, verdict=verdict))
    return attempts


def _judge_alone(judge: Judge, item: JudgeInput) -> Verdict | JudgeError:
    try:
        return judge.judge([item])[0]
    except JudgeError as exc:
        return exc


def _attempt(outcome: CallOutcome, **fields) -> Attempt:
    placement, result = outcome.placement, outcome.result
    return Attempt(
        key=outcome.key, target=outcome.target, kind=placement.kind, scenario_id=placement.scenario_id,
        item_id=placement.item_id, style=placement.style, insertion_point=placement.insertion_point, trial=outcome.trial,
        seed=outcome.seed, messages=outcome.messages, latency_s=result.latency_s, prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens, **fields,
    )


class JudgeAhead(Generic[Item]):
    """Judges one batch on a background thread while the caller gathers the next; at most one batch is ahead.

    `submit(batch)` first waits for the batch before it, hands it to `deliver(batch, attempts)` on the caller's
    thread, then starts judging `batch`; `drain()` delivers the last one. `waited_seconds` is the time the caller
    spent blocked on the judge: what a campaign loses to judging once calls and judging overlap.
    """

    def __init__(self, judge_batch: Callable[[list[Item]], list[Attempt]],
                 deliver: Callable[[list[Item], list[Attempt]], None]):
        self._judge_batch = judge_batch
        self._deliver = deliver
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge")
        self._ahead: tuple[list[Item], Future] | None = None
        self.waited_seconds = 0.0

    def submit(self, batch: list[Item]) -> None:
        if not batch:
            return
        self._deliver_ahead()
        self._ahead = (batch, self._pool.submit(self._judge_batch, batch))

    def drain(self) -> None:
        """Deliver the batch still being judged, if any."""
        self._deliver_ahead()

    def close(self) -> None:
        """Deliver what is judged and stop the thread; safe to call twice."""
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)

    def _deliver_ahead(self) -> None:
        if self._ahead is None:
            return
        batch, future = self._ahead
        self._ahead = None
        started = time.perf_counter()
        attempts = future.result()
        self.waited_seconds += time.perf_counter() - started
        self._deliver(batch, attempts)

    def __enter__(self) -> "JudgeAhead[Item]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
