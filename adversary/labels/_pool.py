"""A run's judged replies as rows an annotator can label."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adversary.errors import ConfigError
from adversary.records import Attempt, Message
from adversary.store import Store


@dataclass(frozen=True)
class PoolRow:
    """One judged reply of a run: what the annotator sees, and the judge's verdict (never shown)."""

    id: str
    scenario_id: str
    turn: str
    system: str
    history: tuple[Message, ...]
    user: str
    response: str
    target: str
    judge: str
    judged_break: bool
    score: float | None


def _pool_row(attempt: Attempt) -> PoolRow:
    messages = attempt.messages
    return PoolRow(
        id=attempt.key, scenario_id=attempt.scenario_id, turn=attempt.kind, system=messages[0].content,
        history=tuple(messages[1:-1]), user=messages[-1].content, response=attempt.reply or "", target=attempt.target,
        judge=attempt.verdict.judge, judged_break=not attempt.verdict.in_scope, score=attempt.verdict.score,
    )


def label_pool(run_dir: Path) -> list[PoolRow]:
    """Every reply of the run in `run_dir` that a judge gave a verdict on, in store order.

    Raises:
        ConfigError: when `run_dir` holds no store or no judged reply.
    """
    if not (run_dir / "store.sqlite").is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no store.sqlite); pass the --out folder of `adversary eval` or `run`")
    with Store.open(run_dir) as store:
        rows = [_pool_row(a) for a in store.attempts("status = 'ok' AND in_scope IS NOT NULL AND reply IS NOT NULL")]
    if not rows:
        raise ConfigError(f"{run_dir}: the run has no judged replies yet")
    return rows
