"""Examples shown under every command's `--help`, so a user sees a working invocation before reading every option."""

from __future__ import annotations

EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "eval": (
        ("adversary eval", "the starter corpus against the embedded model, 3 trials each"),
        ("adversary eval --scenarios my_corpus.yaml --trials 5 --out runs/mine", "your own scenarios"),
        ("adversary eval --target local/smollm2 --target openai/gpt-4o-mini --fail-over 0.2",
         "two targets; exit 3 above a 20% break rate (CI gate)"),
        ("adversary eval --target my-bot --api-base http://localhost:8000/v1", "any OpenAI-compatible server"),
    ),
    "run": (
        ("adversary run campaign.yaml --budget-calls 1500", "a campaign from a config written by `adversary init`"),
        ("adversary run --search greedy --seed 2 --out runs/greedy-2", "a baseline search for ablation"),
        ("adversary run --resume runs/greedy-2 --budget-calls 3000", "continue a stopped campaign with a larger budget"),
    ),
    "init": (
        ("adversary init campaign.yaml", "write a commented campaign config for the embedded default"),
    ),
    "report": (
        ("adversary report runs/first", "report.html, report.md and report.json in the run directory"),
        ("adversary report runs/before runs/after -o reports/finetune", "side-by-side comparison of runs"),
    ),
    "export": (
        ("adversary export runs/campaign --format sft", "hard negatives with ideal replies and in-scope controls"),
        ("adversary export runs/campaign --format dpo", "chosen = ideal reply, rejected = a target's real break"),
        ("adversary export runs/campaign --format hf -o hf-data", "SFT and DPO as Hugging Face datasets (load_from_disk)"),
        ("adversary export runs/campaign --format promptfoo -o suite", "a promptfoo regression suite"),
        ("adversary export runs/campaign --format promptfoo --provider openai:chat:gpt-4o-mini -o suite",
         "the suite against another provider"),
    ),
    "finetune": (
        ("adversary finetune runs/campaign/export-sft -o adapters/hardened", "a LoRA adapter on the export's hard negatives"),
        ("adversary eval --target local/smollm2 --target local/smollm2+adapters/hardened", "the base against the adapter"),
        ("adversary finetune export-dpo -o adapters/dpo --method dpo", "preference training on the targets' real breaks"),
        ("adversary finetune export-sft -o adapters/mine --base path/to/hf-model", "your own Hugging Face weights"),
    ),
    "models": (
        ("adversary models", "the embedded models and whether they are installed"),
        ("adversary models --check", "also start each one and check that it answers"),
    ),
    "serve": (
        ("adversary serve", "the embedded model and the judge as local HTTP endpoints, until Ctrl-C"),
        ("adversary serve local/smollm2 --judge keyword --port 8080", "a fixed model port and another judge"),
    ),
    "corpora list": (
        ("adversary corpora list", "the starter corpus: scenarios, insertion points, distractor styles"),
        ("adversary corpora list my_corpus.yaml", "another corpus"),
    ),
    "corpora show": (
        ("adversary corpora show acme-bank-cards", "one scenario's system prompt, dialogue and controls"),
    ),
    "corpora validate": (
        ("adversary corpora validate my_corpus.yaml", "check a corpus file; errors name the line and field"),
    ),
    "corpora import": (
        ("adversary corpora import data.jsonl -o my_corpus.yaml", "CantTalkAboutThis JSONL/CSV or OffTopicEval .md"),
    ),
    "judge file": (
        ("adversary judge replies.jsonl -o judged.jsonl", "judge {system, history, user, response} lines"),
    ),
    "label": (
        ("adversary label runs/first -o my_labels.jsonl --size 60", "hand-label 60 replies, one keystroke each"),
        ("adversary judge calibrate my_labels.jsonl", "then: the judge's agreement on your domain"),
    ),
    "judge calibrate": (
        ("adversary judge calibrate corpora/labels/judge_labels.jsonl --judge keyword", "agreement with hand labels"),
    ),
    "judge train": (
        ("adversary judge train my_labels.jsonl -o my_judge.json", "fit the embedded judge to your labels; "
         "then --judge embedded:my_judge.json"),
    ),
}


def epilog(command: str) -> str:
    """The Examples section of `command`'s help, one example per paragraph (typer keeps paragraphs apart)."""
    lines = [f"{cmd}  # {what}" for cmd, what in EXAMPLES[command]]
    return "Examples:\n\n" + "\n\n".join(lines)
