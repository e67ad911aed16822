"""Round trip of a `canttalkaboutthis` export: does `adversary eval` on it reproduce the exported break rates?

    adversary export RUN --format canttalkaboutthis -o EXPORT
    adversary corpora import EXPORT/train.jsonl -o train.yaml      # (the import must succeed)
    adversary eval --scenarios EXPORT/train.jsonl --scenarios EXPORT/test.jsonl --trials 3 --out EVAL
    python bench/round_trip.py RUN EXPORT EVAL [--json]

Per exported distractor (matched by text): the campaign's break rate and Wilson interval, and the eval's.
Prints the share of distractors whose eval break rate lies inside the campaign's interval, whose two
intervals overlap, the pooled break rates of both with their intervals, and the export's expected rate on
fresh trials (raw rates shrunk by the run's empirical-Bayes prior) against the eval's interval: negatives
are chosen for a high raw rate, so fresh trials should land near the expected rate, not the raw one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adversary.core.stats import wilson_interval
from adversary.export.runner import load_negatives
from adversary.store import Store


def exported_texts(export_dir: Path) -> set[str]:
    texts = set()
    for name in ("train.jsonl", "test.jsonl"):
        path = export_dir / name
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                texts.update(d["distractor"] for d in json.loads(line)["distractors"])
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("eval_dir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    texts = exported_texts(args.export_dir)
    with Store.open(args.run_dir) as store:
        negatives = [n for n in load_negatives(store) if n.text in texts]
    campaign = {n.text: (n.breaks, n.trials) for n in negatives}
    expected = {n.text: n.expected_break_rate for n in negatives}
    evaluated: dict[str, list[int]] = {}
    with Store.open(args.eval_dir) as store:
        for attempt in store.attempts("kind = 'distractor' AND status = 'ok'"):
            counts = evaluated.setdefault(attempt.messages[-1].content, [0, 0])
            counts[0] += int(bool(attempt.broke))
            counts[1] += 1
    matched = [t for t in campaign if t in evaluated]
    inside = overlap = 0
    for text in matched:
        (cb, ct), (eb, et) = campaign[text], evaluated[text]
        c_lo, c_hi = wilson_interval(cb, ct)
        e_lo, e_hi = wilson_interval(eb, et)
        inside += c_lo <= eb / et <= c_hi
        overlap += e_lo <= c_hi and c_lo <= e_hi

    def pooled(counts):
        breaks, trials = sum(b for b, _ in counts), sum(t for _, t in counts)
        lo, hi = wilson_interval(breaks, trials)
        return {"break_rate": round(breaks / trials, 4) if trials else None, "ci95": [round(lo, 4), round(hi, 4)],
                "breaks": breaks, "trials": trials}

    figures = {
        "exported_distractors": len(texts),
        "matched_in_eval": len(matched),
        "eval_rate_inside_campaign_interval": round(inside / len(matched), 3) if matched else None,
        "intervals_overlap": round(overlap / len(matched), 3) if matched else None,
        "campaign_pooled": pooled([campaign[t] for t in matched]),
        "eval_pooled": pooled([tuple(evaluated[t]) for t in matched]),
    }
    known = [expected[t] for t in matched if expected[t] is not None]
    if known:
        lo, hi = figures["eval_pooled"]["ci95"]
        mean_expected = sum(known) / len(known)
        figures["campaign_expected_on_fresh_trials"] = round(mean_expected, 4)
        figures["expected_inside_eval_interval"] = lo <= mean_expected <= hi
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
