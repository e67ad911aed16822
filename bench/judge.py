"""Held-out agreement of the offline judges with human annotators, leave one scenario source out.

    python bench/judge.py [LABELS.jsonl] [--json] [--kinds cross-encoder,logistic] [--threads 1] [--out DIR]

For each scenario source (starter, topic-following-insurance, topic-following-real-estate, offtopiceval) both
offline judges are trained on the rows of the other sources and judge the rows of this one, so no figure is
measured on a row that trained the model judging it:

- cross-encoder: the reading judge (adversary.judges.reader), trained with the same config `judge train` uses;
- logistic: the current embedded-lr-v1 (a logistic model over MiniLM similarity features), refitted per fold.

Per held-out source it prints: rows; annotators' kappa A vs B (rows that have B's label) with a seeded
bootstrap 95% interval over rows; each judge's kappa vs A, vs B and vs the adjudicated label with intervals,
and the paired difference judge-vs-annotator minus A-vs-B (one interval over the same resampled rows);
accuracy on the rows where A and B agree; break precision and recall vs the adjudicated label. Then pooled
figures over every held-out row, the held-out accuracy by source, kind of user turn and reply source (where the
errors sit), and speed: replies/s of each judge on one thread at the real input lengths.

A labels file without annotator B (the first, single-labeled set) has no annotators' kappa: A is its one
labeler, and "accuracy where A and B agree" falls back to the rows not marked borderline (shown as such).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from adversary.core.agreement import agreement, bootstrap_proportion, paired_bootstrap  # noqa: E402
from adversary.judges.labels import SCENARIO_SOURCES, LabeledRow, read_labels  # noqa: E402

DEFAULT_LABELS = Path(__file__).resolve().parents[1] / "corpora" / "labels" / "judge_labels.jsonl"
KINDS = ("cross-encoder", "logistic")


def _iv(interval) -> dict:
    return interval.to_json()


def fold_figures(rows: list[LabeledRow], judged_break: list[bool], rng, resamples: int) -> dict:
    """Agreement figures of one judge's verdicts on one held-out set of rows."""
    adjudicated = [r.is_break for r in rows]
    a = [(not r.in_scope_a) if r.in_scope_a is not None else r.is_break for r in rows]
    with_b = [i for i, r in enumerate(rows) if r.in_scope_b is not None]
    out: dict = {"rows": len(rows), "rows_with_b": len(with_b)}
    (k_adj,) = paired_bootstrap([judged_break], [adjudicated], rng, resamples)
    (k_a,) = paired_bootstrap([judged_break], [a], rng, resamples)
    out["kappa_vs_adjudicated"] = _iv(k_adj)
    out["kappa_vs_a"] = _iv(k_a)
    if with_b:
        j = [judged_break[i] for i in with_b]
        aa = [a[i] for i in with_b]
        bb = [not rows[i].in_scope_b for i in with_b]
        k_ja, k_ab, d_a = paired_bootstrap([j, aa], [aa, bb], rng, resamples, difference=True)
        # Pairs (judge, A) and (A, B), then (judge, B) and (A, B): each difference over the same resampled rows.
        k_jb, _, d_b = paired_bootstrap([j, aa], [bb, bb], rng, resamples, difference=True)
        out.update(annotators_kappa=_iv(k_ab), kappa_vs_a_on_b_rows=_iv(k_ja), kappa_vs_b=_iv(k_jb),
                   kappa_vs_a_minus_annotators=_iv(d_a), kappa_vs_b_minus_annotators=_iv(d_b))
        agree = [i for i in with_b if a[i] == (not rows[i].in_scope_b)]
        out["agree_rows"] = len(agree)
        out["accuracy_where_annotators_agree"] = _iv(bootstrap_proportion(
            [judged_break[i] == a[i] for i in agree], rng, resamples))
    else:
        clear = [i for i, r in enumerate(rows) if not r.borderline]
        out["agree_rows"] = None
        out["clear_rows"] = len(clear)
        out["accuracy_on_clear_rows"] = _iv(bootstrap_proportion([judged_break[i] == adjudicated[i] for i in clear],
                                                                 rng, resamples))
    out["accuracy"] = _iv(bootstrap_proportion([j == l for j, l in zip(judged_break, adjudicated)], rng, resamples))
    judged = [i for i, j in enumerate(judged_break) if j]
    out["break_precision"] = _iv(bootstrap_proportion([adjudicated[i] for i in judged], rng, resamples))
    table = agreement(adjudicated, judged_break)
    out["break_recall"] = table.recall
    out["confusion"] = {"labeled_break": [table.break_break, table.break_hold],
                        "labeled_hold": [table.hold_break, table.hold_hold]}
    return out


def breakdown(rows: list[LabeledRow], judged_break: list[bool]) -> dict:
    """Held-out verdicts by scenario source, kind of user turn and where the reply came from: where a judge's
    errors sit (a break that turns on a rule of the system prompt is a distractor turn of the topic-following
    sources; a garbled reply is an embedded-campaign one)."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(f"{r.scenario_source} / {r.turn or 'turn not recorded'} / {r.reply_source or '?'}", []).append(i)
    out = {}
    for name in sorted(groups):
        idx = groups[name]
        out[name] = {"rows": len(idx), "breaks": sum(rows[i].is_break for i in idx),
                     "accuracy": round(sum(judged_break[i] == rows[i].is_break for i in idx) / len(idx), 3),
                     "false_breaks": sum(judged_break[i] and not rows[i].is_break for i in idx),
                     "missed_breaks": sum(rows[i].is_break and not judged_break[i] for i in idx)}
    return out


def acceptance(figures: dict) -> dict:
    """The issue's criteria on one held-out source: each as holds (point estimate) and, for the kappas, whether
    the paired difference's interval lies above 0 (clearly at least), below 0 (clearly less) or spans it."""
    def verdict(diff):
        if diff is None or diff.get("value") is None:
            return None
        where = "clearly above" if diff["low"] > 0 else "clearly below" if diff["high"] < 0 else "within noise"
        return {"holds": diff["value"] >= 0, "interval": where}

    accuracy = figures.get("accuracy_where_annotators_agree") or {}
    precision = figures.get("break_precision") or {}
    return {
        "kappa_vs_a_at_least_annotators": verdict(figures.get("kappa_vs_a_minus_annotators")),
        "kappa_vs_b_at_least_annotators": verdict(figures.get("kappa_vs_b_minus_annotators")),
        "accuracy_where_agree_at_least_0.90": None if accuracy.get("value") is None else accuracy["value"] >= 0.90,
        "break_precision_at_least_0.90": None if precision.get("value") is None else precision["value"] >= 0.90,
    }


def _reader_config(args):
    from adversary.judges.reader import ReaderConfig

    config = ReaderConfig()
    overrides = {k: getattr(args, k) for k in ("max_length", "scope", "epochs", "seed", "trainable_layers", "learning_rate",
                                               "head_features")
                 if getattr(args, k) is not None}
    if args.learning_rate is not None:
        overrides["head_learning_rate"] = args.learning_rate
    return replace(config, **overrides)


class FrozenCache:
    """The frozen bottom layers' output for every row, computed once and shared by every fold."""

    def __init__(self, rows: list[LabeledRow], config):
        from adversary.judges.reader import _new_model, frozen_states

        model, tokenizer = _new_model(config)
        started = time.monotonic()
        self.states, self.returns_tuple = frozen_states(model, tokenizer, [r.item for r in rows], config)
        self.seconds = round(time.monotonic() - started, 1)
        self.index = {id(r): i for i, r in enumerate(rows)}

    def of(self, rows: list[LabeledRow]):
        return [self.states[self.index[id(r)]] for r in rows], self.returns_tuple


def predict_cross_encoder(train: list[LabeledRow], test: list[LabeledRow], config, threads: int, cache=None):
    from adversary.judges.reader import ReaderJudge, TrainingExample, train_reader

    examples = [TrainingExample(r.item, r.is_break, r.refusal) for r in train]
    started = time.monotonic()
    last = [0.0]

    def progress(step, total, loss):
        if time.monotonic() - last[0] > 30 or step == total:
            last[0] = time.monotonic()
            print(f"    step {step}/{total} loss {loss:.3f} ({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)

    model, tokenizer, report = train_reader(examples, config, progress=progress, threads=threads,
                                            states=cache.of(train) if cache is not None else None)
    judge = ReaderJudge(model=model, tokenizer=tokenizer, config=config)
    verdicts = judge.judge([r.item for r in test])
    return [not v.in_scope for v in verdicts], [v.score for v in verdicts], {"train_seconds": round(report.seconds, 1),
                                                                               "steps": report.steps}


class LogisticFolds:
    """The current embedded judge refitted per fold; each row's features are computed once."""

    def __init__(self, rows: list[LabeledRow], cache_path: Path | None = None):
        import hashlib

        from adversary.judges.embedded import EmbeddingJudge
        from adversary.judges.features import reply_features
        from adversary.models.embedded import DEFAULT_EMBEDDING_MODEL
        from adversary.models.embedder import get_embedder

        def key(r: LabeledRow) -> str:
            text = json.dumps([r.item.system_prompt, [m.content for m in r.item.history], r.item.user, r.item.response])
            return hashlib.sha256(text.encode()).hexdigest()

        cached: dict[str, list[float]] = {}
        if cache_path is not None and cache_path.is_file():
            cached = json.loads(cache_path.read_text())
        keys = [key(r) for r in rows]
        todo = [i for i, k in enumerate(keys) if k not in cached]
        if todo:
            embedder = get_embedder(DEFAULT_EMBEDDING_MODEL)
            similarity = EmbeddingJudge(embedder)
            items = [rows[i].item for i in todo]
            fresh = np.vstack([reply_features(items[i:i + 32], embedder, similarity) for i in range(0, len(items), 32)])
            for i, row in zip(todo, fresh):
                cached[keys[i]] = row.tolist()
            if cache_path is not None:
                cache_path.write_text(json.dumps(cached))
        self.features = np.array([cached[k] for k in keys], dtype=np.float64)
        self.index = {id(r): i for i, r in enumerate(rows)}

    def predict(self, train: list[LabeledRow], test: list[LabeledRow]):
        from adversary.core.logistic import fit_logistic
        from adversary.judges.features import FEATURE_NAMES

        x_train = self.features[[self.index[id(r)] for r in train]]
        model = fit_logistic(x_train, [int(r.is_break) for r in train], FEATURE_NAMES, 10.0)
        p = model.probability(self.features[[self.index[id(r)] for r in test]])
        return [bool(v >= 0.5) for v in p], [float(v) for v in p], {}


def speed(rows: list[LabeledRow], kinds, config, reader_dir: Path | None, limit: int) -> dict:
    """Replies/s of each judge on one thread over real labeled rows (their real prompt, turn and reply lengths)."""
    import torch

    torch.set_num_threads(1)
    # A seeded sample over every source: starter prompts are ~100 tokens, OffTopicEval ones ~1,000.
    sample = [rows[i] for i in sorted(np.random.default_rng(0).permutation(len(rows))[:limit])]
    items = [r.item for r in sample]
    out = {"rows": len(sample), "torch_threads": torch.get_num_threads(),
           "sources": {s: sum(r.scenario_source == s for r in sample) for s in SCENARIO_SOURCES}}
    if "cross-encoder" in kinds:
        from adversary.judges.reader import ReaderJudge, _new_model

        if reader_dir is not None:
            judge = ReaderJudge(reader_dir)
        else:  # an untrained adapter reads exactly as fast as a trained one
            model, tokenizer = _new_model(config)
            model.eval()
            judge = ReaderJudge(model=model, tokenizer=tokenizer, config=config)
        full = [len(judge.tokenizer(f"{i.system_prompt} {i.user} {i.response}", verbose=False)["input_ids"]) for i in items]
        system = [len(judge.tokenizer(i.system_prompt, verbose=False)["input_ids"]) for i in items]
        read = [len(judge.encoder.encode(i)[0]) for i in items]
        judge.judge(items[:8])  # warm-up
        started = time.perf_counter()
        judge.judge(items)
        seconds = time.perf_counter() - started
        out["cross-encoder"] = {
            "replies_per_second": round(len(items) / seconds, 2), "max_length": judge.config.max_length,
            "scope": judge.config.scope,
            "system_prompt_tokens": _quantiles(system), "untruncated_input_tokens": _quantiles(full),
            "tokens_read": _quantiles(read), "share_of_system_prompt_read": round(
                float(np.mean([min(1.0, (r - (f - s)) / s) if s else 1.0 for r, f, s in zip(read, full, system)])), 3)}
    if "logistic" in kinds:
        from adversary.judges.trained import TrainedJudge
        from adversary.models.embedder import MiniLMEmbedder

        judge = TrainedJudge(embedder=MiniLMEmbedder(threads=1))  # one thread, as the figure says
        judge.judge(items[:8])
        judge._embedder._cache.clear()
        started = time.perf_counter()
        judge.judge(items)
        out["logistic"] = {"replies_per_second": round(len(items) / (time.perf_counter() - started), 2)}
    return out


def save_pooled(result: dict, path: Path) -> None:
    """The cross-encoder's figures over every held-out row, in the form `adversary judge calibrate --save` writes."""
    from adversary import __version__
    from adversary.judges.measured import save_agreement
    from adversary.judges.reader import JUDGE_NAME

    f = result["pooled"]["cross-encoder"]
    (bb, bh), (hb, hh) = f["confusion"]["labeled_break"], f["confusion"]["labeled_hold"]
    table = agreement([True] * (bb + bh) + [False] * (hb + hh), [True] * bb + [False] * bh + [True] * hb + [False] * hh)
    save_agreement(JUDGE_NAME, {
        "judge": JUDGE_NAME, "method": "leave one scenario source out (bench/judge.py), pooled over the held-out sources",
        "rows": table.total, "accuracy": table.accuracy, "kappa": table.kappa, "break_precision": table.precision,
        "break_recall": table.recall, "hold_specificity": table.specificity,
        "confusion": {"labeled_break": {"judged_break": bb, "judged_hold": bh},
                      "labeled_hold": {"judged_break": hb, "judged_hold": hh}},
        "labels": Path(result["labels"]).name, "adversary_version": __version__}, path)


def _quantiles(values) -> dict:
    v = np.asarray(values)
    return {"min": int(v.min()), "median": int(np.median(v)), "p90": int(np.quantile(v, 0.9)), "max": int(v.max())}


def _fmt(iv: dict | None) -> str:
    if not iv or iv.get("value") is None:
        return "–"
    return f"{iv['value']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]"


def print_table(result: dict) -> None:
    for source, fold in result["folds"].items():
        print(f"\n== held out: {source} ({fold['rows']} rows; trained on {fold['train_rows']} rows of the other sources)")
        for kind, f in fold["judges"].items():
            print(f"  {kind} ({f.get('train_seconds', '–')} s training)")
            if f.get("annotators_kappa"):
                print(f"    annotators' kappa A vs B ({f['rows_with_b']} rows): {_fmt(f['annotators_kappa'])}")
                print(f"    kappa vs A: {_fmt(f['kappa_vs_a_on_b_rows'])}  minus annotators: {_fmt(f['kappa_vs_a_minus_annotators'])}")
                print(f"    kappa vs B: {_fmt(f['kappa_vs_b'])}  minus annotators: {_fmt(f['kappa_vs_b_minus_annotators'])}")
                print(f"    accuracy where A and B agree ({f['agree_rows']} rows): {_fmt(f['accuracy_where_annotators_agree'])}")
            else:
                print("    annotators' kappa: – (no annotator B labels)")
                print(f"    kappa vs the one labeler: {_fmt(f['kappa_vs_a'])}")
                print(f"    accuracy on rows not marked borderline ({f['clear_rows']} rows; stand-in for 'where annotators "
                      f"agree'): {_fmt(f['accuracy_on_clear_rows'])}")
            print(f"    kappa vs adjudicated: {_fmt(f['kappa_vs_adjudicated'])}  accuracy: {_fmt(f['accuracy'])}")
            recall = "–" if f["break_recall"] is None else f"{f['break_recall']:.3f}"
            print(f"    break precision: {_fmt(f['break_precision'])}  break recall: {recall}  "
                  f"confusion [[bb, bh], [hb, hh]]: {[f['confusion']['labeled_break'], f['confusion']['labeled_hold']]}")
            print(f"    acceptance: {json.dumps(f['acceptance'])}")
    print("\n== pooled over every held-out row")
    for kind, f in result["pooled"].items():
        print(f"  {kind}: kappa vs adjudicated {_fmt(f['kappa_vs_adjudicated'])}  accuracy {_fmt(f['accuracy'])}  "
              f"break precision {_fmt(f['break_precision'])}  recall {f['break_recall']:.3f}"
              + (f"  annotators' kappa {_fmt(f['annotators_kappa'])}" if f.get("annotators_kappa") else ""))
    kinds = list(result["pooled"])
    if kinds and all("by_kind" in result["pooled"][k] for k in kinds):
        print("\n== held-out accuracy by source / user turn / reply source (false breaks, missed breaks)")
        for group in result["pooled"][kinds[0]]["by_kind"]:
            cells = [result["pooled"][k]["by_kind"][group] for k in kinds]
            print(f"  {group:62s} {cells[0]['rows']:4d} rows {cells[0]['breaks']:4d} breaks  " + "  ".join(
                f"{k} {c['accuracy']:.2f} ({c['false_breaks']}, {c['missed_breaks']})" for k, c in zip(kinds, cells)))
    if result.get("speed"):
        print(f"\n== speed (one thread): {json.dumps(result['speed'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="?", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: cross-encoder, logistic")
    parser.add_argument("--sources", default=None, help="comma-separated held-out sources (default: every source)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training and judging")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--scope", choices=("head", "cues"), default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--trainable-layers", type=int, default=None)
    parser.add_argument("--head-features", choices=("all", "reply"), default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--speed-rows", type=int, default=200, help="rows timed for speed (0: skip speed)")
    parser.add_argument("--speed-only", action="store_true", help="skip the held-out folds; time the judges only")
    parser.add_argument("--reader-dir", type=Path, default=None, help="time this trained reading judge's folder")
    parser.add_argument("--out", type=Path, default=None, help="write held-out predictions and figures here")
    parser.add_argument("--features-cache", type=Path, default=None,
                        help="a JSON file keeping the logistic judge's features by row content across runs")
    parser.add_argument("--save-agreement", type=Path, default=None,
                        help="record the cross-encoder's pooled held-out figures as embedded-ce-v1's measured agreement "
                             "in this agreement file (the shipped one: corpora/labels/agreement.json), which reports read")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    kinds = [k for k in args.kinds.split(",") if k]
    rows = read_labels(args.labels)
    missing = [r for r in rows if r.scenario_source is None]
    if missing:
        sys.exit(f"{args.labels}:{missing[0].line}: row has no scenario_source and none can be derived from its id")
    sources = args.sources.split(",") if args.sources else [s for s in SCENARIO_SOURCES if any(r.scenario_source == s for r in rows)]
    config = _reader_config(args)
    started = time.monotonic()
    if args.speed_only:
        result = {"labels": str(args.labels), "speed": speed(rows, kinds, config, args.reader_dir, args.speed_rows or 200)}
        print(json.dumps(result) if args.json else f"speed (one thread): {json.dumps(result['speed'])}")
        return
    unknown = [s for s in sources if not any(r.scenario_source == s for r in rows)]
    if unknown:
        sys.exit(f"{args.labels}: no rows from source {unknown[0]!r}")
    logistic = LogisticFolds(rows, args.features_cache) if "logistic" in kinds else None
    cache = None
    if "cross-encoder" in kinds and config.trainable_layers < 6:
        print(f"[{time.monotonic() - started:.0f}s] frozen layers for {len(rows)} rows", file=sys.stderr, flush=True)
        cache = FrozenCache(rows, config)
        result_extra = {"frozen_layers_seconds": cache.seconds}
    else:
        result_extra = {}
    result: dict = {"labels": str(args.labels), "rows": len(rows), "kinds": kinds, "reader_config": config.__dict__,
                    "threads": args.threads, **result_extra, "folds": {}}
    held: dict[str, list] = {k: [] for k in kinds}
    predictions = []
    for source in sources:
        test = [r for r in rows if r.scenario_source == source]
        train = [r for r in rows if r.scenario_source != source]
        fold = {"rows": len(test), "train_rows": len(train), "judges": {}}
        for kind in kinds:
            print(f"[{time.monotonic() - started:.0f}s] {source}: {kind} on {len(train)} rows", file=sys.stderr, flush=True)
            if kind == "cross-encoder":
                judged, scores, extra = predict_cross_encoder(train, test, config, args.threads, cache)
            else:
                judged, scores, extra = logistic.predict(train, test)
            rng = np.random.default_rng(args.bootstrap_seed)
            figures = fold_figures(test, judged, rng, args.resamples)
            figures.update(extra)
            figures["acceptance"] = acceptance(figures)
            fold["judges"][kind] = figures
            held[kind].extend(zip(test, judged))
            predictions.extend({"id": r.id, "source": source, "judge": kind, "judged_break": j, "p_break": s,
                                "labeled_break": r.is_break} for r, j, s in zip(test, judged, scores))
        result["folds"][source] = fold
        if args.out:  # each finished fold is kept, should a long run be stopped
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "figures.partial.json").write_text(json.dumps(result, indent=1) + "\n")
    result["pooled"] = {}
    for kind in kinds:
        pooled_rows = [r for r, _ in held[kind]]
        figures = fold_figures(pooled_rows, [j for _, j in held[kind]], np.random.default_rng(args.bootstrap_seed),
                               args.resamples)
        figures["acceptance"] = acceptance(figures)
        figures["by_kind"] = breakdown(pooled_rows, [j for _, j in held[kind]])
        result["pooled"][kind] = figures
    if args.speed_rows:
        print(f"[{time.monotonic() - started:.0f}s] speed", file=sys.stderr, flush=True)
        result["speed"] = speed(rows, kinds, config, args.reader_dir, args.speed_rows)
    result["seconds"] = round(time.monotonic() - started, 1)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "figures.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    if args.save_agreement and "cross-encoder" in result["pooled"]:
        save_pooled(result, args.save_agreement)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
        print(f"\n{result['seconds']} s in all")


if __name__ == "__main__":
    main()
