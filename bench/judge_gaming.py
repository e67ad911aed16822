"""Does the search game its judge? Blind labels on the breaks a campaign's strongest members were credited with.

    python bench/judge_gaming.py sample RUN_DIR -o OUT [--members 50] [--seed 0]
    python bench/judge_gaming.py score OUT --labels LABELS.jsonl [--labels MORE.jsonl]

A search optimises against its judge, so where the judge has blind spots the archive fills with them. `sample`
ranks the campaign's admitted members by the search's own fitness (the Beta posterior's pessimistic bound over all
their trials), takes the `--members` strongest that the judge credited with at least one break, and for each one
of those break trials at random (seeded). It writes OUT/rows.jsonl, what an annotator reads (system prompt,
conversation, the distractor turn, the reply; never the judge's verdict, the member's fitness or whether it is a
seed), and OUT/key.json, which links each row back to its member and trial.

`score` reads one or more labels files for those rows (JSONL: `id`, `in_scope`, and optionally `refusal` and
`annotator`) and reports the share of the judge's breaks the annotators call breaks (the judge's precision on
what the search selected), with a Wilson 95% interval, per annotator and for the adjudicated labels when a file
holds them (`annotator: "adjudicated"`), overall and for seeds and evolved members apart. Writes OUT/gaming.json.
`--record "a 900-call campaign ..."` also stores the adjudicated figure in the judge's entry of
corpora/labels/agreement.json, so that reports print it in their judge line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adversary.core.stats import BetaPosterior, Rate  # noqa: E402
from adversary.judges.measured import agreement_path, save_search_precision  # noqa: E402
from adversary.store import Store  # noqa: E402


def strongest_breaks(run_dir: Path, members: int, seed: int) -> list[dict]:
    """One judged break trial for each of the `members` fittest admitted members that have one, strongest first."""
    with Store.open(run_dir) as store:
        candidates = {c["id"]: c for c in store.candidates(admitted_only=True)}
        counts = store.trial_counts()
        breaks: dict[str, list] = defaultdict(list)
        for attempt in store.attempts("kind = 'distractor' AND status = 'ok' AND in_scope = 0"):
            breaks[attempt.item_id].append(attempt)
    ranked = sorted((cid for cid in candidates if breaks.get(cid)),
                    key=lambda cid: (-BetaPosterior(counts[cid][0], counts[cid][1] - counts[cid][0]).lower_bound(1.0), cid))
    rng = np.random.default_rng(seed)
    chosen = []
    for cid in ranked[:members]:
        trials = sorted(breaks[cid], key=lambda a: a.key)
        attempt = trials[int(rng.integers(len(trials)))]
        b, n = counts[cid]
        chosen.append({"candidate": cid, "operator": candidates[cid]["operator"], "breaks": b, "trials": n,
                       "fitness": round(BetaPosterior(b, n - b).lower_bound(1.0), 4), "attempt": attempt})
    return chosen


def write_sample(run_dir: Path, out: Path, members: int, seed: int) -> None:
    chosen = strongest_breaks(run_dir, members, seed)
    if not chosen:
        sys.exit(f"{run_dir}: no admitted member was judged to break in any trial")
    order = np.random.default_rng(seed + 1).permutation(len(chosen))
    out.mkdir(parents=True, exist_ok=True)
    rows, key = [], {}
    for n, i in enumerate(order):
        item = chosen[int(i)]
        attempt = item.pop("attempt")
        messages = [{"role": m.role, "content": m.content} for m in attempt.messages]
        row_id = f"gaming-{n:03d}"
        rows.append({"id": row_id, "system": next((m["content"] for m in messages if m["role"] == "system"), ""),
                     "history": [m for m in messages if m["role"] != "system"][:-1],
                     "user": messages[-1]["content"], "response": attempt.reply})
        key[row_id] = {**item, "attempt_key": attempt.key, "target": attempt.target, "judge": attempt.verdict.judge}
    (out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (out / "key.json").write_text(json.dumps({"run": str(run_dir), "seed": seed, "rows": key}, indent=1), encoding="utf-8")
    seeds = sum(1 for k in key.values() if k["operator"] == "seed")
    print(f"wrote {len(rows)} rows to {out / 'rows.jsonl'} ({seeds} seeds, {len(rows) - seeds} evolved members)")


def _read_labels(paths: list[Path], ids: set[str]) -> dict[str, dict[str, bool]]:
    """annotator -> row id -> in_scope, from labels files; one clear line on a row that does not fit."""
    labels: dict[str, dict[str, bool]] = defaultdict(dict)
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row_id, in_scope = row["id"], row["in_scope"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                sys.exit(f"{path}:{number}: not a label row with id and in_scope ({exc})")
            if row_id not in ids or not isinstance(in_scope, bool):
                sys.exit(f"{path}:{number}: unknown row id {row_id!r} or in_scope not true/false")
            labels[row.get("annotator", path.stem)][row_id] = in_scope
    return labels


def score(out: Path, label_paths: list[Path]) -> dict:
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))["rows"]
    labels = _read_labels(label_paths, set(key))
    result: dict = {"rows": len(key), "annotators": {}}
    for annotator, by_id in sorted(labels.items()):
        figures = {}
        for part, keep in (("all", lambda k: True), ("seeds", lambda k: k["operator"] == "seed"),
                           ("evolved", lambda k: k["operator"] != "seed")):
            ids = [i for i in by_id if keep(key[i])]
            figures[part] = Rate(sum(1 for i in ids if not by_id[i]), len(ids)).to_json()
        result["annotators"][annotator] = figures
    annotators = [a for a in labels if a != "adjudicated"]
    if len(annotators) == 2:
        a, b = (labels[x] for x in annotators)
        shared = sorted(set(a) & set(b))
        result["annotators_agree"] = Rate(sum(1 for i in shared if a[i] == b[i]), len(shared)).to_json()
    (out / "gaming.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="write the blind rows of the strongest members' judged breaks")
    sample.add_argument("run_dir", type=Path)
    sample.add_argument("-o", "--out", type=Path, required=True)
    sample.add_argument("--members", type=int, default=50)
    sample.add_argument("--seed", type=int, default=0)
    scored = commands.add_parser("score", help="the judge's precision on those rows, from annotators' labels")
    scored.add_argument("out", type=Path)
    scored.add_argument("--labels", type=Path, action="append", required=True)
    scored.add_argument("--record", metavar="CAMPAIGN", help="store the adjudicated figure in the judge's entry of "
                        "the agreement file, described as CAMPAIGN (what campaign the rows came from)")
    scored.add_argument("--agreement", type=Path, default=agreement_path(), help="agreement file for --record")
    args = parser.parse_args()
    if args.command == "sample":
        if not (args.run_dir / "store.sqlite").is_file():
            sys.exit(f"{args.run_dir}: not a run folder (no store.sqlite)")
        write_sample(args.run_dir, args.out, args.members, args.seed)
        return
    result = score(args.out, args.labels)
    for annotator, figures in result["annotators"].items():
        parts = ", ".join(f"{part} {f['successes']}/{f['trials']} = {f['rate']:.1%} "
                          f"[{f['ci95'][0]:.1%}, {f['ci95'][1]:.1%}]" for part, f in figures.items() if f["trials"])
        print(f"{annotator}: real breaks among the judge's: {parts}")
    if "annotators_agree" in result:
        agree = result["annotators_agree"]
        print(f"annotators agree on {agree['successes']}/{agree['trials']} rows")
    if args.record:
        adjudicated = result["annotators"].get("adjudicated")
        if adjudicated is None:
            sys.exit("--record needs the adjudicated labels (a labels file with annotator \"adjudicated\")")
        judges = {row["judge"] for row in json.loads((args.out / "key.json").read_text(encoding="utf-8"))["rows"].values()}
        if len(judges) != 1:
            sys.exit(f"--record: the rows were judged by {len(judges)} judges ({', '.join(sorted(judges))}), not one")
        judge = judges.pop()
        save_search_precision(judge, args.record, adjudicated["all"], args.agreement)
        print(f"recorded in {args.agreement} under {judge}")


if __name__ == "__main__":
    main()
