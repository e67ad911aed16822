"""`adversary export`: hard-negative training data from a run directory (eval or campaign).

Reads the store (scenarios, attempts, candidates), picks distractors that broke targets, removes near
duplicates, caps them per scenario, drops those the judge (or `--verify MODEL`) finds in scope, splits
by scenario, writes ideal replies (the scenario's fallback, or a model's reply the judge accepts), adds
in-scope controls, and writes train/test files plus a dataset card, all into the output folder at once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from adversary.core.stats import beta_prior_from_counts, shrunk_rate, wilson_interval
from adversary.errors import ConfigError
from adversary.export import formats
from adversary.export.card import render_card
from adversary.export.examples import Negative, cap_per_scenario, drop_near_duplicates, split_scenarios
from adversary.export.promptfoo import SuiteOptions, write_suite
from adversary.export.writer import ReplyWriter
from adversary.judges.base import Judge, JudgeInput
from adversary.records import Message, Scenario
from adversary.store import STORE_FILENAME, Store, StoreError


IN_SCOPE_PARAPHRASE = 0.8
"""Cosine similarity to one of a scenario's in-scope user turns above which a distractor is an in-scope request."""

@dataclass(frozen=True)
class ExportConfig:
    """What to export and how; `writer_model` writes ideal replies where a scenario has no fallback."""

    fmt: str
    min_break_rate: float = 0.5
    max_per_scenario: int | None = None
    controls_ratio: float = 0.5
    test_fraction: float = 0.2
    seed: int = 0
    duplicate_threshold: float = 0.92
    writer_model: str = "local/smollm2"
    judge: str | None = None
    verify: str | None = None
    tries_per_reply: int = 3
    dialogue_controls: bool = False
    """SFT: also take controls from each scenario's own dialogue (its in-scope user turns with the replies the corpus
    wrote), alternating with the control questions, so training sees the statements and follow-ups users write."""

    def validate(self) -> None:
        if self.fmt not in formats.FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(formats.FORMATS)}, not {self.fmt!r}")
        if not 0.0 <= self.min_break_rate <= 1.0:
            raise ConfigError("--min-break-rate must be between 0 and 1")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError("--test-fraction must be in [0, 1)")
        if self.controls_ratio < 0:
            raise ConfigError("--controls-ratio must be at least 0")
        if self.max_per_scenario is not None and self.max_per_scenario < 1:
            raise ConfigError("--max-per-scenario must be at least 1")


@dataclass(frozen=True)
class Control:
    """An in-scope turn in its conversation and an in-scope answer to it, for SFT rows that keep a model helpful."""

    messages: list[Message]
    """System prompt, the turns before it, the in-scope user turn."""
    answer: str | None
    scenario_id: str
    answer_from: str
    """Who wrote the answer: "corpus" (the scenario's answer to that control), "target" (a target's reply the judge
    accepted), "writer" (the --writer model, checked by the judge) or "dialogue" (the corpus's own reply in the
    scenario's dialogue)."""


@dataclass
class ExportResult:
    out_dir: Path
    counts: dict = field(default_factory=dict)


def load_negatives(store: Store) -> list[Negative]:
    """Every distractor that broke at least one target, with one real broken conversation each."""
    pooled = store.trial_counts()
    broken_by: dict[str, list[str]] = {}
    for target, items in store.break_counts_by_target().items():
        for item, (breaks, _) in items.items():
            if breaks:
                broken_by.setdefault(item, []).append(target)
    scenarios = {s.id: s for s in store.load_corpus().scenarios}
    lineage = {c["id"]: {"operator": c["operator"], "generation": c["generation"], "parents": c["parents"]}
               for c in store.candidates(admitted_only=True)}
    prior = beta_prior_from_counts(list(pooled.values()))
    negatives: dict[str, Negative] = {}
    for attempt in store.attempts("kind = 'distractor' AND status = 'ok' AND in_scope = 0"):
        if attempt.item_id in negatives or attempt.scenario_id not in scenarios:
            continue
        breaks, trials = pooled[attempt.item_id]
        negatives[attempt.item_id] = Negative(
            item_id=attempt.item_id, scenario_id=attempt.scenario_id, domain=scenarios[attempt.scenario_id].domain,
            text=attempt.messages[-1].content, style=attempt.style, prompt=attempt.messages, rejected=attempt.reply or "",
            insertion_point=attempt.insertion_point, breaks=breaks, trials=trials, ci95=wilson_interval(breaks, trials),
            targets_broken=tuple(sorted(broken_by.get(attempt.item_id, []))),
            lineage=lineage.get(attempt.item_id, {"operator": "corpus"}),
            bridge=attempt.messages[-3].content if attempt.calls == 2 else None,
            expected_break_rate=None if prior is None else round(shrunk_rate(breaks, trials, prior), 4),
        )
    return list(negatives.values())


def dialogue_exchanges(scenario: Scenario) -> list[tuple[list[Message], str]]:
    """Each user turn of the scenario's dialogue that an assistant turn answers: (system prompt and the turns up
    to and including it, the answer)."""
    exchanges = []
    for index, turn in enumerate(scenario.dialogue[:-1]):
        reply = scenario.dialogue[index + 1]
        if turn.role == "user" and reply.role == "assistant":
            exchanges.append((scenario.messages_until(index), reply.content))
    return exchanges


def alternate(first: list, second: list) -> list:
    """first[0], second[0], first[1], second[1], ...; the longer list's rest at the end."""
    merged = []
    for index in range(max(len(first), len(second))):
        merged += [items[index] for items in (first, second) if index < len(items)]
    return merged


def _real_control_answers(store: Store) -> dict[str, list[tuple[tuple[Message, ...], str]]]:
    """Targets' own replies to control turns that the judge found in scope and not refusing, per scenario."""
    answers: dict[str, list[tuple[tuple[Message, ...], str]]] = {}
    seen: set[tuple[str, str]] = set()
    for attempt in store.attempts("kind = 'control' AND status = 'ok' AND in_scope = 1 AND refusal = 0"):
        if (attempt.scenario_id, attempt.item_id) in seen:
            continue
        seen.add((attempt.scenario_id, attempt.item_id))
        answers.setdefault(attempt.scenario_id, []).append((attempt.messages, attempt.reply or ""))
    return answers


class Exporter:
    """One export; construct with the run's store and the adapters, then `run()`."""

    def __init__(self, config: ExportConfig, run_dir: Path, out_dir: Path, *, judge: Judge, writer: ReplyWriter | None,
                 embedder, verifier: Judge | None = None, progress=lambda text: None,
                 on_checked: Callable[[int, int], None] = lambda done, total: None, suite_options: SuiteOptions | None = None):
        self.config = config
        self.run_dir = run_dir
        self.out_dir = out_dir
        self.judge = judge
        self.writer = writer
        self.embedder = embedder
        self.verifier = verifier
        """A `--verify` judge asked whether the distractor itself is in scope; without one, the embedding check below."""
        self.progress = progress
        self.on_checked = on_checked
        """Called with (distractors checked, total) as ideal replies are written and checked."""
        self.dropped: Counter[str] = Counter()
        self.suite_options = suite_options or SuiteOptions()
        """Provider and judge endpoint of a promptfoo suite."""

    def _verdict(self, judge: Judge, system_prompt: str, history, user: str, response: str, fallback: str | None):
        return judge.judge([JudgeInput(system_prompt=system_prompt, history=tuple(history), user=user, response=response,
                                       fallback=fallback)])[0]

    def _ideal(self, negative: Negative, scenario: Scenario) -> str | None:
        """The scenario's fallback, or a written redirect that the judge finds in scope and refusing."""
        if scenario.fallback:
            return scenario.fallback
        if self.writer is None:
            return None
        for attempt in range(self.config.tries_per_reply):
            reply = self.writer.redirect(scenario.system_prompt, negative.text, attempt)
            if not reply:
                continue
            verdict = self._verdict(self.judge, scenario.system_prompt, negative.prompt[1:-1], negative.text, reply, None)
            if verdict.in_scope and verdict.refusal:
                return reply
        return None

    def _distractor_in_scope(self, negative: Negative, scenario: Scenario) -> bool:
        """True when the distractor is itself an in-scope request, so its 'break' was a misjudged answer.

        With `--verify`, that judge decides. Otherwise the distractor counts as in scope when it nearly
        paraphrases one of the scenario's in-scope user turns (controls and the dialogue's user turns):
        reply judges are built to read replies, and asked about a bare request they called three in four
        campaign distractors in scope, because distractors name the scenario's entities on purpose.
        """
        if self.verifier is not None:
            verdict = self._verdict(self.verifier, scenario.system_prompt, (), "(the customer's request)", negative.text, None)
            return bool(verdict.in_scope) and not verdict.refusal
        in_scope_turns = list(scenario.controls) + [t.content for t in scenario.dialogue if t.role == "user"]
        if not in_scope_turns:
            return False
        vectors = self.embedder.embed([negative.text, *in_scope_turns])
        return bool((vectors[1:] @ vectors[0]).max() >= IN_SCOPE_PARAPHRASE)

    def _controls(self, scenarios: dict[str, Scenario], split: set[str], wanted: int, real) -> list[Control]:
        """Up to `wanted` in-scope controls from the split's scenarios, round robin."""
        pools: list[list[Control]] = []
        for sid in sorted(split):
            scenario = scenarios[sid]
            answers = dict(scenario.control_answers)
            questions = [Control(list(messages), answer, sid, "target") for messages, answer in real.get(sid, [])
                         if messages[-1].content not in answers]
            known = {tuple(c.messages) for c in questions}
            # Every control at every insertion point, latest first: a scenario defines only a few control
            # turns, and the same question later in the dialogue is another example of staying helpful.
            # The corpus's own answer comes first; a target's accepted reply, then the writer, only without one.
            for point in reversed(scenario.usable_insertion_points):
                for control in scenario.controls:
                    messages = scenario.messages_until(point) + [Message(role="user", content=control)]
                    if control in answers:
                        questions.append(Control(messages, answers[control], sid, "corpus"))
                    elif tuple(messages) not in known:
                        questions.append(Control(messages, None, sid, "writer"))
            dialogue = self._dialogue_controls(scenario) if self.config.dialogue_controls else []
            pool = alternate(dialogue, questions)
            if pool:
                pools.append(pool)
        controls: list[Control] = []
        round_index = 0
        while len(controls) < wanted and any(round_index < len(p) for p in pools):
            for pool in pools:
                if len(controls) >= wanted or round_index >= len(pool):
                    continue
                control = pool[round_index]
                if control.answer is None:
                    control = replace(control, answer=self._written_answer(scenarios[control.scenario_id], control.messages))
                if control.answer is None:
                    self.dropped["control without an accepted answer"] += 1
                    continue
                controls.append(control)
            round_index += 1
        return controls

    def _dialogue_controls(self, scenario: Scenario) -> list[Control]:
        """The scenario's dialogue user turns whose written reply does not decline, each with the turns before it and
        that reply.

        A corpus's dialogue shows the behaviour it wants, so its replies either deflect an off-topic turn or answer an
        in-scope one; the judge's refusal call tells the two apart. Its in-scope call is not asked: on the starter
        corpus embedded-lr-v1 called 12 of the 37 written answers out of scope, while its refusal call caught all 13
        deflections (and 2 answers that open with "I'm sorry to hear that").
        """
        controls = []
        for prompt, reply in dialogue_exchanges(scenario):
            verdict = self._verdict(self.judge, scenario.system_prompt, prompt[1:-1], prompt[-1].content, reply, None)
            if verdict.refusal:
                self.dropped["dialogue turn whose reply declines"] += 1
            else:
                controls.append(Control(prompt, reply, scenario.id, "dialogue"))
        return controls

    def _written_answer(self, scenario: Scenario, messages: list[Message]) -> str | None:
        if self.writer is None:
            return None
        for attempt in range(self.config.tries_per_reply):
            answer = self.writer.answer(scenario.system_prompt, messages[-1].content, attempt)
            if not answer:
                continue
            verdict = self._verdict(self.judge, scenario.system_prompt, messages[1:-1], messages[-1].content, answer, None)
            if verdict.in_scope and not verdict.refusal:
                return answer
        return None

    def run(self) -> ExportResult:
        c = self.config
        with Store(self.run_dir / STORE_FILENAME) as store:
            negatives = load_negatives(store)
            scenarios = {s.id: s for s in store.load_corpus().scenarios}
            real_controls = _real_control_answers(store)
            run_config = store.get_meta("config") or {}
        found = len(negatives)
        negatives = [n for n in negatives if n.break_rate >= c.min_break_rate]
        self.dropped["below --min-break-rate"] += found - len(negatives)
        if negatives:
            vectors = self.embedder.embed([n.text for n in negatives])
            keep = drop_near_duplicates(negatives, vectors, c.duplicate_threshold)
            self.dropped["near duplicate"] += len(negatives) - len(keep)
            capped = cap_per_scenario(negatives, keep, c.max_per_scenario)
            self.dropped["over --max-per-scenario"] += len(keep) - len(capped)
            negatives = [negatives[i] for i in capped]
        self.progress(f"checking {len(negatives)} distractors and writing ideal replies")
        kept: list[tuple[Negative, str]] = []
        for checked, negative in enumerate(negatives):
            self.on_checked(checked, len(negatives))
            scenario = scenarios[negative.scenario_id]
            if c.fmt == "canttalkaboutthis" and negative.bridge:
                self.dropped["two-turn (the format has one distractor turn)"] += 1
                continue
            if self._distractor_in_scope(negative, scenario):
                self.dropped["distractor itself in scope"] += 1
                continue
            ideal = "" if c.fmt == "promptfoo" else self._ideal(negative, scenario)
            if ideal is None:
                self.dropped["no accepted ideal reply"] += 1
                continue
            kept.append((negative, ideal))
        self.on_checked(len(negatives), len(negatives))
        judge_name = self.judge.name
        if c.fmt == "promptfoo":
            splits = {"suite": {n.scenario_id for n, _ in kept}}
        else:
            train, test = split_scenarios([n.scenario_id for n, _ in kept], c.test_fraction, c.seed)
            splits = {"train": train, "test": test}
        layouts = {"hf": ("sft", "dpo"), "promptfoo": ()}.get(c.fmt, (c.fmt,))
        tables: dict[str, dict[str, list[dict]]] = {layout: {} for layout in layouts}
        counts: dict[str, dict] = {}
        for split_name, split in splits.items():
            pairs = [(n, ideal) for n, ideal in kept if n.scenario_id in split]
            controls: list = []
            wanted_controls = 0
            rows = 0
            for layout in layouts:
                if layout == "sft":
                    wanted_controls = round(c.controls_ratio * len(pairs))
                    controls = self._controls(scenarios, split, wanted_controls, real_controls)
                layout_rows = self._rows(layout, pairs, controls, scenarios, split_name)
                rows = max(rows, len(layout_rows))
                if pairs or split_name == "train":
                    tables[layout][split_name] = layout_rows
            breaks, trials = sum(n.breaks for n, _ in pairs), sum(n.trials for n, _ in pairs)
            expected = [n.expected_break_rate for n, _ in pairs if n.expected_break_rate is not None]
            counts[split_name] = {
                "expected_break_rate": round(sum(expected) / len(expected), 4) if expected else None,
                "negatives": len(pairs), "controls": len(controls), "controls_wanted": wanted_controls, "rows": rows,
                "controls_by_answer": dict(Counter(control.answer_from for control in controls)),
                "ideals_by_author": {} if c.fmt == "promptfoo" else dict(Counter(
                    "fallback" if scenarios[n.scenario_id].fallback else "writer" for n, _ in pairs)),
                "scenarios": sorted(split),
                "break_rate": breaks / trials if trials else None, "ci95": list(wilson_interval(breaks, trials)),
                "breaks": breaks, "trials": trials,
                "by_style": dict(Counter(n.style or "unknown" for n, _ in pairs)),
                "by_scenario": dict(Counter(n.scenario_id for n, _ in pairs)),
            }
        summary = {
            "format": c.fmt, "run_dir": str(self.run_dir), "found": found, "exported": len(kept),
            "dropped": dict(self.dropped), "splits": counts, "judge": judge_name,
            "verifier": self.verifier.name if self.verifier else f"embedding similarity >= {IN_SCOPE_PARAPHRASE} to an in-scope user turn",
            "writer": getattr(self.writer, "name", None), "targets": sorted({t for n, _ in kept for t in n.targets_broken}),
            "config": asdict(c), "run_config": run_config,
        }
        if c.fmt == "promptfoo":
            suite = [n for n, _ in kept]
            judge_option = c.judge or run_config.get("judge", "embedded")
            self._write(summary, lambda staging: write_suite(staging, suite, scenarios, run_config, self.suite_options,
                                                             judge_option, judge_name))
        elif c.fmt == "hf":
            self._write(summary, lambda staging: self._write_hf(staging, tables, summary))
        else:
            self._write(summary, lambda staging: _write_jsonl(staging, tables[c.fmt]))
        return ExportResult(out_dir=self.out_dir, counts=summary)

    def _rows(self, layout: str, pairs: list[tuple[Negative, str]], controls: list, scenarios: dict[str, Scenario],
              split_name: str) -> list[dict]:
        """One split's rows in `layout` (sft, dpo or canttalkaboutthis)."""
        judge_name = self.judge.name
        if layout == "sft":
            rows = [formats.sft_negative(n, ideal, formats.metadata(n, judge_name, split_name)) for n, ideal in pairs]
            return rows + [formats.sft_control(c.messages, c.answer, {"kind": "control", "scenario_id": c.scenario_id,
                                                                      "answer_from": c.answer_from, "judge": judge_name,
                                                                      "split": split_name}) for c in controls]
        if layout == "dpo":
            return [formats.dpo(n, ideal, formats.metadata(n, judge_name, split_name)) for n, ideal in pairs]
        by_scenario: dict[str, list[tuple[Negative, str]]] = {}
        for n, ideal in pairs:
            by_scenario.setdefault(n.scenario_id, []).append((n, ideal))
        return [formats.canttalkaboutthis(scenarios[sid], group) for sid, group in sorted(by_scenario.items())]

    @staticmethod
    def _write_hf(staging: Path, tables: dict[str, dict[str, list[dict]]], summary: dict) -> None:
        """sft/ and dpo/ as DatasetDicts, each with its own card (DPO has no controls)."""
        from adversary.export.hf import save_dataset_dict

        for layout, splits in tables.items():
            counts = {name: dict(split, controls=0, controls_wanted=0, rows=split["negatives"]) if layout == "dpo" else split
                      for name, split in summary["splits"].items()}
            card = render_card({**summary, "format": layout, "splits": counts})
            save_dataset_dict(layout, splits, staging / layout, card)

    def _write(self, summary: dict, fill: Callable[[Path], None]) -> None:
        """Fill a temporary folder beside the output (`fill`, then export.json and the card unless `fill` wrote a
        README.md), then move it into place at once."""
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.out_dir.parent, prefix=f".{self.out_dir.name}."))
        try:
            fill(staging)
            (staging / "export.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            readme = staging / "README.md"
            if not readme.exists():
                readme.write_text(render_card(summary), encoding="utf-8")
            os.chmod(staging, 0o755)
            os.replace(staging, self.out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _write_jsonl(staging: Path, splits: dict[str, list[dict]]) -> None:
    for name, rows in splits.items():
        (staging / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def check_sources(run_dir: Path, out_dir: Path, force: bool) -> None:
    """Clear errors before any work: the run must exist, the output must not (unless forced)."""
    if not (run_dir / STORE_FILENAME).exists():
        raise StoreError(f"{run_dir} holds no adversary store")
    if out_dir.exists():
        if not force:
            raise ConfigError(f"{out_dir} already exists; pass --force to replace it")
        shutil.rmtree(out_dir)

