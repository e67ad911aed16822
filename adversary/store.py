"""The campaign store: every attempt, model call and verdict in SQLite (WAL), committed as it finishes.

Schema changes are numbered migrations tracked in `PRAGMA user_version`, so run directories made by
older versions still open. Attempts are keyed by (target, placement, trial): a resumed run skips
every key already finished and retries only failed calls.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from adversary.core.metrics import Outcome
from adversary.errors import AdversaryError
from adversary.records import Attempt, Corpus, Distractor, Message, Scenario, Verdict

STORE_FILENAME = "store.sqlite"
TOTAL_WALL_META = "total_wall_seconds"
"""Meta key of a run's wall time over every session."""

MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE scenarios (id TEXT PRIMARY KEY, json TEXT NOT NULL);
    CREATE TABLE distractors (id TEXT PRIMARY KEY, json TEXT NOT NULL);
    CREATE TABLE attempts (
        key TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('distractor', 'control')),
        scenario_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        style TEXT,
        insertion_point INTEGER NOT NULL,
        trial INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        messages_json TEXT NOT NULL,
        reply TEXT,
        status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
        error TEXT,
        in_scope INTEGER,
        refusal INTEGER,
        judge TEXT,
        judge_score REAL,
        rationale TEXT,
        latency_s REAL NOT NULL DEFAULT 0,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE INDEX attempts_by_target ON attempts (target, kind);
    CREATE INDEX attempts_by_item ON attempts (item_id);
    """,
    """
    CREATE TABLE candidates (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        text TEXT NOT NULL,
        style TEXT NOT NULL,
        scenario_id TEXT NOT NULL,
        insertion_point INTEGER NOT NULL,
        operator TEXT NOT NULL,
        generation INTEGER NOT NULL,
        parents_json TEXT NOT NULL,
        admitted INTEGER NOT NULL,
        reason TEXT,
        novelty REAL
    );
    CREATE TABLE generations (
        generation INTEGER PRIMARY KEY,
        rng_state TEXT NOT NULL,
        stats_json TEXT
    );
    """,
    """
    ALTER TABLE attempts ADD COLUMN calls INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE candidates ADD COLUMN bridge TEXT
    """,
    """
    ALTER TABLE candidates ADD COLUMN vector BLOB
    """,
    """
    CREATE TABLE neighbour_lists (
        member INTEGER PRIMARY KEY,
        similarities BLOB NOT NULL,
        positions BLOB NOT NULL
    )
    """,
]
NEIGHBOUR_LISTS_META = "neighbour_lists"
"""Meta key: how many admitted members (in admission order) and neighbours per list the stored lists describe."""


class StoreError(AdversaryError):
    """The store cannot be opened or belongs to a different run."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """One run's SQLite store."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable adversary store ({exc})") from None

    @classmethod
    def open(cls, run_dir: Path) -> "Store":
        """Open (creating if needed) the store in `run_dir`."""
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(run_dir / STORE_FILENAME)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: made by a newer adversary (schema {version}); upgrade adversary")
        for number in range(version, len(MIGRATIONS)):
            self._db.execute("BEGIN")
            try:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number + 1}")
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so a kill leaves all or none of them (e.g. a generation's admissions and its state)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def get_meta(self, key: str) -> object | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: object) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    def earlier_wall_seconds(self) -> float:
        """The run's wall time over its earlier sessions, as last saved by `record_wall_time` (0 for a new run)."""
        return float(self.get_meta(TOTAL_WALL_META) or 0.0)

    def record_wall_time(self, earlier_seconds: float, session_seconds: float) -> float:
        """Save and return the run's wall time over every session: `earlier_seconds` (from
        `earlier_wall_seconds` when this session began) plus this session's so far. Saved with each
        commit, a killed session's time counts up to its last commit."""
        total = round(earlier_seconds + session_seconds, 2)
        self.set_meta(TOTAL_WALL_META, total)
        return total

    def bind_run(self, kind: str, config: dict, fingerprint: str, version: str) -> bool:
        """Record which run this store holds. Returns False for a new store, True when it already holds
        this run (same kind and fingerprint).

        Raises:
            StoreError: when it holds a different run.
        """
        stored = self.get_meta("config_fingerprint")
        if stored is None:
            self.set_meta("kind", kind)
            self.set_meta("config", config)
            self.set_meta("config_fingerprint", fingerprint)
            self.set_meta("adversary_version", version)
            return False
        if self.get_meta("kind") != kind or stored != fingerprint:
            raise StoreError(f"{self.path.parent} holds a different run; choose a new --out")
        return True

    def save_corpus(self, corpus: Corpus) -> None:
        """Record the scenarios and distractors the run uses, so reports and exports need no corpus files."""
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR REPLACE INTO scenarios (id, json) VALUES (?, ?)",
            [(s.id, s.model_dump_json()) for s in corpus.scenarios],
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO distractors (id, json) VALUES (?, ?)",
            [(d.id, d.model_dump_json()) for d in corpus.distractors],
        )
        self._db.execute("COMMIT")

    def load_corpus(self) -> Corpus:
        scenarios = tuple(Scenario.model_validate_json(r[0]) for r in self._db.execute("SELECT json FROM scenarios ORDER BY rowid"))
        distractors = tuple(Distractor.model_validate_json(r[0]) for r in self._db.execute("SELECT json FROM distractors ORDER BY rowid"))
        return Corpus(scenarios=scenarios, distractors=distractors)

    def check_judge(self, judge_name: str) -> None:
        """Refuse to add verdicts of `judge_name` to a run whose finished attempts another judge gave: a
        break rate must come from one judge. Raises StoreError naming both."""
        used = sorted(r[0] for r in self._db.execute("SELECT DISTINCT judge FROM attempts WHERE status = 'ok' AND judge IS NOT NULL"))
        other = [name for name in used if name != judge_name]
        if other:
            raise StoreError(f"{self.path.parent}: its attempts were judged by {', '.join(other)}, and this adversary's "
                             f"judge is {judge_name}; finish the run with the adversary version that started it, "
                             f"or start a new run")

    def finished_keys(self) -> set[str]:
        """Keys of attempts that finished with a verdict (errors are retried on resume)."""
        return {r[0] for r in self._db.execute("SELECT key FROM attempts WHERE status = 'ok'")}

    def add_attempt(self, attempt: Attempt) -> None:
        """Insert or replace one attempt; committed before returning (autocommit)."""
        verdict = attempt.verdict
        self._db.execute(
            """INSERT OR REPLACE INTO attempts (key, target, kind, scenario_id, item_id, style, insertion_point,
                   trial, seed, messages_json, reply, status, error, in_scope, refusal, judge, judge_score,
                   rationale, latency_s, prompt_tokens, completion_tokens, calls, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                attempt.key, attempt.target, attempt.kind, attempt.scenario_id, attempt.item_id, attempt.style,
                attempt.insertion_point, attempt.trial, attempt.seed,
                json.dumps([m.model_dump() for m in attempt.messages], ensure_ascii=False),
                attempt.reply, attempt.status, attempt.error,
                None if verdict is None else int(verdict.in_scope),
                None if verdict is None else int(verdict.refusal),
                None if verdict is None else verdict.judge,
                None if verdict is None else verdict.score,
                None if verdict is None else verdict.rationale,
                attempt.latency_s, attempt.prompt_tokens, attempt.completion_tokens, attempt.calls, _now(),
            ),
        )

    def outcomes(self) -> Iterator[Outcome]:
        """Every attempt as a text-free Outcome, streamed (memory stays flat)."""
        cursor = self._db.execute(
            """SELECT target, kind, scenario_id, item_id, style, insertion_point, status, in_scope, refusal,
                      latency_s, prompt_tokens, completion_tokens FROM attempts ORDER BY rowid"""
        )
        for row in cursor:
            yield Outcome(
                target=row[0], kind=row[1], scenario_id=row[2], item_id=row[3], style=row[4],
                insertion_point=row[5], status=row[6],
                in_scope=None if row[7] is None else bool(row[7]),
                refusal=None if row[8] is None else bool(row[8]),
                latency_s=row[9], prompt_tokens=row[10], completion_tokens=row[11],
            )

    def attempts(self, where: str = "1=1", params: tuple = ()) -> Iterator[Attempt]:
        """Full attempts (with messages and replies) matching an SQL condition."""
        cursor = self._db.execute(
            f"""SELECT key, target, kind, scenario_id, item_id, style, insertion_point, trial, seed, messages_json,
                       reply, status, error, in_scope, refusal, judge, judge_score, rationale, latency_s,
                       prompt_tokens, completion_tokens, calls FROM attempts WHERE {where} ORDER BY rowid""",
            params,
        )
        for row in cursor:
            verdict = None
            if row[13] is not None:
                verdict = Verdict(in_scope=bool(row[13]), refusal=bool(row[14]), judge=row[15], score=row[16], rationale=row[17])
            yield Attempt(
                key=row[0], target=row[1], kind=row[2], scenario_id=row[3], item_id=row[4], style=row[5],
                insertion_point=row[6], trial=row[7], seed=row[8],
                messages=tuple(Message(**m) for m in json.loads(row[9])),
                reply=row[10], status=row[11], error=row[12], verdict=verdict, latency_s=row[18],
                prompt_tokens=row[19], completion_tokens=row[20], calls=row[21],
            )

    def add_candidate(self, row: dict) -> None:
        """Record a proposed candidate, admitted to the archive or not (with the reason)."""
        self._db.execute(
            """INSERT OR IGNORE INTO candidates (id, text, style, scenario_id, insertion_point, operator, generation,
                   parents_json, admitted, reason, novelty, bridge, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (row["id"], row["text"], row["style"], row["scenario_id"], row["insertion_point"], row["operator"],
             row["generation"], json.dumps(row["parents"]), int(row["admitted"]), row.get("reason"), row.get("novelty"),
             row.get("bridge"), None if row.get("vector") is None else np.asarray(row["vector"], dtype="<f4").tobytes()),
        )

    def candidates(self, admitted_only: bool = False) -> list[dict]:
        """Candidates in the order they were proposed."""
        where = "WHERE admitted = 1" if admitted_only else ""
        rows = self._db.execute(
            f"""SELECT id, text, style, scenario_id, insertion_point, operator, generation, parents_json, admitted,
                       reason, novelty, bridge, vector FROM candidates {where} ORDER BY seq"""
        ).fetchall()
        keys = ("id", "text", "style", "scenario_id", "insertion_point", "operator", "generation", "parents", "admitted",
                "reason", "novelty", "bridge", "vector")
        return [dict(zip(keys, (*r[:7], json.loads(r[7]), bool(r[8]), r[9], r[10], r[11],
                                None if r[12] is None else np.frombuffer(r[12], dtype="<f4")))) for r in rows]

    def save_neighbour_lists(self, members: int, k: int, rows: np.ndarray, similarities: np.ndarray,
                             positions: np.ndarray) -> None:
        """Store the archive's neighbour lists (k wide) of the members at `rows` (admission positions), the ones
        that changed, and record that the stored lists now describe the first `members` admitted members."""
        self._db.executemany(
            "INSERT OR REPLACE INTO neighbour_lists (member, similarities, positions) VALUES (?, ?, ?)",
            ((int(row), np.asarray(s, dtype="<f4").tobytes(), np.asarray(p, dtype="<i8").tobytes())
             for row, s, p in zip(rows, similarities, positions)),
        )
        self.set_meta(NEIGHBOUR_LISTS_META, {"members": int(members), "k": int(k)})

    def neighbour_lists(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(similarities, positions), k wide, of the first admitted members as last stored with
        `save_neighbour_lists`; None when none were stored for k neighbours."""
        meta = self.get_meta(NEIGHBOUR_LISTS_META)
        if not meta or meta["k"] != k:
            return None
        rows = self._db.execute("SELECT similarities, positions FROM neighbour_lists WHERE member < ? ORDER BY member",
                                (meta["members"],)).fetchall()
        if len(rows) != meta["members"]:
            return None
        similarities = np.frombuffer(b"".join(r[0] for r in rows), dtype="<f4").reshape(len(rows), k)
        positions = np.frombuffer(b"".join(r[1] for r in rows), dtype="<i8").reshape(len(rows), k)
        return similarities.astype(np.float32), positions.astype(np.int64)

    def trial_counts(self, first_trial: int = 0, end_trial: int | None = None) -> dict[str, tuple[int, int]]:
        """(breaks, valid trials) per distractor item over every target, for trial numbers in [first, end)."""
        rows = self._db.execute(
            """SELECT item_id, SUM(CASE WHEN in_scope = 0 THEN 1 ELSE 0 END), COUNT(*) FROM attempts
               WHERE kind = 'distractor' AND status = 'ok' AND trial >= ? AND (? IS NULL OR trial < ?)
               GROUP BY item_id""",
            (first_trial, end_trial, end_trial),
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def break_counts_by_target(self) -> dict[str, dict[str, tuple[int, int]]]:
        """(breaks, valid trials) per target and distractor item."""
        rows = self._db.execute(
            """SELECT target, item_id, SUM(CASE WHEN in_scope = 0 THEN 1 ELSE 0 END), COUNT(*) FROM attempts
               WHERE kind = 'distractor' AND status = 'ok' GROUP BY target, item_id"""
        )
        counts: dict[str, dict[str, tuple[int, int]]] = {}
        for target, item, breaks, trials in rows:
            counts.setdefault(target, {})[item] = (int(breaks), int(trials))
        return counts

    def save_generation(self, generation: int, state: dict, stats: dict | None = None) -> None:
        """Record a generation: the search state a resume continues from, and its stats once it finished."""
        self._db.execute(
            "INSERT OR REPLACE INTO generations (generation, rng_state, stats_json) VALUES (?, ?, ?)",
            (generation, json.dumps(state), None if stats is None else json.dumps(stats)),
        )

    def finish_generation(self, generation: int, stats: dict) -> None:
        """Attach a generation's stats once it finished, keeping the search state saved with it."""
        self._db.execute("UPDATE generations SET stats_json = ? WHERE generation = ?", (json.dumps(stats), generation))

    def generations(self) -> list[tuple[int, dict, dict | None]]:
        rows = self._db.execute("SELECT generation, rng_state, stats_json FROM generations ORDER BY generation")
        return [(r[0], json.loads(r[1]), None if r[2] is None else json.loads(r[2])) for r in rows]

    def totals(self) -> dict[str, float]:
        """Calls, errors and tokens over all attempts."""
        row = self._db.execute(
            """SELECT COALESCE(SUM(calls), 0), SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), COALESCE(SUM(prompt_tokens), 0),
                      COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(latency_s), 0) FROM attempts"""
        ).fetchone()
        return {"calls": row[0], "errors": row[1] or 0, "prompt_tokens": row[2], "completion_tokens": row[3], "model_seconds": row[4]}

    def calls(self) -> int:
        """Target calls spent: one per attempt, two for a two-turn distractor."""
        return int(self._db.execute("SELECT COALESCE(SUM(calls), 0) FROM attempts").fetchone()[0])

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self._db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM attempts WHERE status = ?", (status,)).fetchone()[0])
