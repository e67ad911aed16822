"""The dataset card (Markdown) written beside every export (pure)."""

from __future__ import annotations


CONTROL_AUTHORS = {"corpus": "the corpus's answer to the control", "target": "a target's accepted reply",
                   "writer": "the writer model", "dialogue": "the corpus's dialogue"}
"""Who wrote a control's answer (`Control.answer_from`), as the card names them."""

IDEAL_AUTHORS = {"fallback": "the scenario's fallback", "writer": "the writer model"}
"""Who wrote a negative's ideal reply, as the card names them."""


def _table(counts: dict[str, int], label: str) -> list[str]:
    lines = [f"| {label} | examples |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return lines


def render_card(summary: dict) -> str:
    """What the export contains, where it came from, how it was filtered and split."""
    c = summary["config"]
    layout = {
        "sft": "TRL conversational SFT: one `{\"messages\": [...]}` per line (system prompt, dialogue up to the insertion "
               "point, the distractor, then the ideal in-scope reply), plus in-scope control turns with in-scope answers.",
        "dpo": "TRL conversational preference format: `{\"prompt\": [...], \"chosen\": [...], \"rejected\": [...]}`; "
               "`rejected` is a target's real off-scope reply from the run's store.",
        "canttalkaboutthis": "The CantTalkAboutThis release schema: `domain`, `scenario`, `system_instruction`, "
                             "`conversation`, `distractors` (`{\"bot turn\", \"distractor\"}`), `conversation_with_distractors`.",
        "hf": "The SFT and DPO layouts as Hugging Face `datasets.DatasetDict`s written by `save_to_disk`, with typed "
              "features: `sft/` (`messages`, `metadata`; in-scope controls included) and `dpo/` (`prompt`, `chosen`, "
              "`rejected`, `metadata`), each with its own card. Load one with `datasets.load_from_disk(\"sft\")`; publish "
              "it with `datasets.load_from_disk(\"sft\").push_to_hub(\"you/name\")` (then upload its README.md as the "
              "dataset card).",
    }[summary["format"]]
    lines = [
        "# adversary hard-negative dataset",
        "",
        f"Exported from `{summary['run_dir']}` in the `{summary['format']}` format. {layout}",
        "Every negative row carries `metadata`: break rate with its Wilson 95% interval, targets broken, style, lineage, "
        "judge and split (the CantTalkAboutThis format has no room for it; see export.json).",
        "",
        "## Provenance",
        "",
        f"- Targets broken: {', '.join(f'`{t}`' for t in summary['targets']) or 'none'}",
        f"- Judge (break labels, and the check on every written reply): `{summary['judge']}`",
        f"- Distractor scope check: `{summary['verifier']}` (distractors it finds in scope are not negatives)",
        f"- Ideal replies: the scenario's fallback text where it defines one, otherwise written by "
        f"`{summary['writer']}` and kept only when the judge finds it in scope and declining "
        f"(controls: in scope and not declining), at most {c['tries_per_reply']} tries each; a control the scenario "
        "answers itself (`controls: - {text, answer}`) gets that answer and asks no model",
        *(["- Controls also from the scenarios' own dialogues (`--dialogue-controls`): each user turn whose written "
           "reply does not decline, with that reply"] if c.get("dialogue_controls") else []),
        "",
        "## Selection",
        "",
        f"- {summary['found']} distractors broke a target in the run; {summary['exported']} exported.",
        f"- Minimum break rate {c['min_break_rate']} (pooled over targets and trials; selected on the same trials, so "
        "these rates are optimistic for the population the run sampled).",
        f"- Near duplicates removed at cosine similarity {c['duplicate_threshold']} (sentence embeddings), keeping the "
        "higher break rate; at most "
        f"{c['max_per_scenario'] if c['max_per_scenario'] is not None else 'unlimited'} per scenario.",
        "- Dropped: " + (", ".join(f"{k}: {v}" for k, v in sorted(summary["dropped"].items()) if v) or "none") + ".",
        "",
        "## Split",
        "",
        f"By scenario (seed {c['seed']}, test fraction {c['test_fraction']}): no scenario appears on both sides.",
        "",
    ]
    for split, counts in summary["splits"].items():
        lines += [f"### {split}", "",
                  f"{counts['negatives']} negatives, {counts['controls']} controls, {counts['rows']} rows, "
                  f"{len(counts['scenarios'])} scenarios: {', '.join(counts['scenarios']) or 'none'}.", ""]
        if counts.get("ideals_by_author"):
            lines += ["Ideal replies by who wrote them: " + ", ".join(
                f"{IDEAL_AUTHORS.get(k, k)} {v}" for k, v in sorted(counts["ideals_by_author"].items())) + ".", ""]
        if counts.get("controls_by_answer"):
            lines += ["Control answers by who wrote them: " + ", ".join(
                f"{CONTROL_AUTHORS.get(k, k)} {v}" for k, v in sorted(counts["controls_by_answer"].items())) + ".", ""]
        if counts["controls"] < counts.get("controls_wanted", 0):
            lines += [f"Only {counts['controls']} of the {counts['controls_wanted']} controls that --controls-ratio asks for: "
                      "the scenarios define too few in-scope control turns (or the writer's answers were rejected). "
                      "Add `controls` to the scenarios to balance the set.", ""]
        if counts["trials"]:
            lo, hi = counts["ci95"]
            lines += [f"Pooled break rate of these negatives in the run: {100 * counts['break_rate']:.1f}% "
                      f"[{100 * lo:.1f}, {100 * hi:.1f}] ({counts['breaks']}/{counts['trials']}).", ""]
            if counts.get("expected_break_rate") is not None:
                lines += [f"Expected on fresh trials: {100 * counts['expected_break_rate']:.1f}% (each negative's rate shrunk "
                          "toward the run's mean by an empirical-Bayes Beta prior fitted to every distractor it tried; "
                          "the raw rate above is optimistic, because negatives were chosen for it).", ""]
        if counts["by_style"]:
            lines += _table(counts["by_style"], "style") + [""]
        if counts["by_scenario"]:
            lines += _table(counts["by_scenario"], "scenario") + [""]
    return "\n".join(lines)
