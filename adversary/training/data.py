"""Training examples from an `adversary export` folder (pure apart from `read_export`).

An SFT export row is a conversation ending in the reply the bot should give (a hard negative's ideal redirect or
an in-scope control's answer); a DPO row pairs that reply with a target's real break. Examples are fitted to a
token budget here, before any trainer sees them: TRL truncates from the right, which would cut the very reply
the model is meant to learn, so old dialogue turns go first and the system prompt is shortened last.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from adversary.errors import CorpusError

METHODS = ("sft", "dpo")
TRUNCATION_MARK = " …"


@dataclass(frozen=True)
class Example:
    """One training example: the conversation before the reply, the reply to learn and, for DPO, the rejected one."""

    prompt: tuple[tuple[str, str], ...]
    reply: str
    kind: str
    scenario_id: str
    rejected: str | None = None

    def as_prompt_completion(self) -> dict:
        """TRL's conversational prompt-completion layout (loss on the completion only)."""
        return {"prompt": [{"role": r, "content": c} for r, c in self.prompt],
                "completion": [{"role": "assistant", "content": self.reply}]}

    def as_preference(self) -> dict:
        """TRL's conversational preference layout."""
        return {"prompt": [{"role": r, "content": c} for r, c in self.prompt],
                "chosen": [{"role": "assistant", "content": self.reply}],
                "rejected": [{"role": "assistant", "content": self.rejected or ""}]}


@dataclass(frozen=True)
class ExportData:
    """The rows of one export folder, by split, and what the export says about itself."""

    folder: Path
    fmt: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    summary: dict


def _turns(value, where: str, line: int, field: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise CorpusError(where, "expected a non-empty list of messages", line=line, field=field)
    turns = []
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) \
                or message.get("role") not in ("system", "user", "assistant"):
            raise CorpusError(where, "each message needs a role (system, user or assistant) and text content",
                              line=line, field=field)
        turns.append((message["role"], message["content"]))
    return tuple(turns)


def parse_row(row: dict, fmt: str, where: str, line: int) -> Example:
    """One export row as an Example; a row that is not the export's layout raises a CorpusError naming the line."""
    meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    kind = str(meta.get("kind", "negative"))
    scenario = str(meta.get("scenario_id", ""))
    if fmt == "sft":
        turns = _turns(row.get("messages"), where, line, "messages")
        if turns[-1][0] != "assistant" or len(turns) < 2 or turns[-2][0] != "user":
            raise CorpusError(where, "an SFT row must end with a user turn and the assistant reply to learn",
                              line=line, field="messages")
        return Example(prompt=turns[:-1], reply=turns[-1][1], kind=kind, scenario_id=scenario)
    prompt = _turns(row.get("prompt"), where, line, "prompt")
    chosen = _turns(row.get("chosen"), where, line, "chosen")
    rejected = _turns(row.get("rejected"), where, line, "rejected")
    if prompt[-1][0] != "user":
        raise CorpusError(where, "a DPO prompt must end with a user turn", line=line, field="prompt")
    return Example(prompt=prompt, reply=chosen[-1][1], kind=kind, scenario_id=scenario, rejected=rejected[-1][1])


def read_export(folder: Path) -> ExportData:
    """The SFT or DPO rows of an `adversary export` folder; anything else is a CorpusError naming what is wrong."""
    folder = Path(folder)
    summary_path = folder / "export.json"
    if not folder.is_dir():
        raise CorpusError(str(folder), "no such export folder (write one with `adversary export RUN --format sft`)")
    if not summary_path.is_file():
        raise CorpusError(str(folder), "not an export folder: export.json is missing (write one with "
                          "`adversary export RUN --format sft`)")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorpusError(str(summary_path), f"not JSON: {exc}") from exc
    fmt = summary.get("format") if isinstance(summary, dict) else None
    if fmt not in METHODS:
        raise CorpusError(str(summary_path), f"format {fmt!r} cannot be trained on; export with --format sft or dpo",
                          field="format")
    splits: dict[str, tuple[Example, ...]] = {}
    for split in ("train", "test"):
        path = folder / f"{split}.jsonl"
        rows: list[Example] = []
        if path.is_file():
            for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise CorpusError(str(path), f"not JSON: {exc.msg}", line=number) from exc
                if not isinstance(row, dict):
                    raise CorpusError(str(path), "each line must be a JSON object", line=number)
                rows.append(parse_row(row, fmt, str(path), number))
        splits[split] = tuple(rows)
    if not splits["train"]:
        raise CorpusError(str(folder / "train.jsonl"), "the export has no training rows (a run with no breaks above "
                          "--min-break-rate exports nothing; lower it or run a longer campaign)")
    return ExportData(folder=folder, fmt=fmt, train=splits["train"], test=splits["test"], summary=summary)


def fit_to_budget(example: Example, count_tokens: Callable[[str], int], max_tokens: int,
                  min_system_tokens: int = 48, message_overhead: int = 0) -> Example:
    """The example within `max_tokens` (as counted over its texts), the reply and the last user turn kept whole.

    Earlier dialogue turns are dropped oldest first, in user/assistant pairs, then the system prompt is cut to what
    is left (never below `min_system_tokens`). An example that still does not fit keeps its system prompt at
    that floor: the caller drops it (see `fits`). `message_overhead` counts a chat template's tokens per message.
    """
    turns = list(example.prompt)
    system = turns[0] if turns and turns[0][0] == "system" else None
    dialogue = turns[1:] if system else turns
    longest_reply = max(count_tokens(example.reply), count_tokens(example.rejected or "")) + message_overhead

    def size(system_text: str | None, kept: Sequence[tuple[str, str]]) -> int:
        texts = sum(count_tokens(c) + message_overhead for _, c in kept)
        return longest_reply + texts + (count_tokens(system_text) + message_overhead if system_text is not None else 0)

    while len(dialogue) > 1 and size(system[1] if system else None, dialogue) > max_tokens:
        dialogue = dialogue[2:] if len(dialogue) > 2 and dialogue[0][0] == "user" else dialogue[1:]
    system_text = system[1] if system else None
    if system_text is not None and size(system_text, dialogue) > max_tokens:
        room = max(min_system_tokens, max_tokens - size(None, dialogue) - message_overhead)
        system_text = shorten(system_text, count_tokens, room)
    prompt = ((("system", system_text),) if system_text is not None else ()) + tuple(dialogue)
    return Example(prompt=prompt, reply=example.reply, kind=example.kind, scenario_id=example.scenario_id,
                   rejected=example.rejected)


def fits(example: Example, count_tokens: Callable[[str], int], max_tokens: int, message_overhead: int = 0) -> bool:
    """True when the example's texts (and `message_overhead` per message) count at most `max_tokens`."""
    reply = max(count_tokens(example.reply), count_tokens(example.rejected or ""))
    texts = sum(count_tokens(c) for _, c in example.prompt)
    return reply + texts + message_overhead * (len(example.prompt) + 1) <= max_tokens


def shorten(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> str:
    """The longest word-boundary prefix of `text` (marked as cut) that counts at most `max_tokens`."""
    if count_tokens(text) <= max_tokens:
        return text
    words = text.split(" ")
    low, high = 0, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(" ".join(words[:middle]) + TRUNCATION_MARK) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low]) + TRUNCATION_MARK


def prepare(examples: Sequence[Example], count_tokens: Callable[[str], int], max_tokens: int,
            message_overhead: int = 0) -> tuple[list[Example], int]:
    """The examples fitted to the budget, and how many could not be fitted (dropped)."""
    fitted = [fit_to_budget(e, count_tokens, max_tokens, message_overhead=message_overhead) for e in examples]
    kept = [e for e in fitted if fits(e, count_tokens, max_tokens, message_overhead)]
    return kept, len(fitted) - len(kept)
