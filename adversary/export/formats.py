"""Record layouts of the three export formats (pure)."""

from __future__ import annotations

from adversary.export.examples import Negative
from adversary.records import Message, Scenario

FORMATS = ("sft", "dpo", "canttalkaboutthis", "hf", "promptfoo")


def _messages(messages: tuple[Message, ...] | list[Message]) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in messages]


def metadata(negative: Negative, judge: str, split: str) -> dict:
    """Per-example provenance: break rate with interval, targets broken, style, lineage, judge, split."""
    return {
        "kind": "negative", "item_id": negative.item_id, "scenario_id": negative.scenario_id, "style": negative.style,
        "break_rate": negative.break_rate, "ci95": list(negative.ci95), "breaks": negative.breaks, "trials": negative.trials,
        "expected_break_rate": negative.expected_break_rate,
        "targets_broken": list(negative.targets_broken), "insertion_point": negative.insertion_point,
        "lineage": negative.lineage, "judge": judge, "split": split,
    }


def sft_negative(negative: Negative, ideal: str, meta: dict) -> dict:
    """TRL conversational SFT: the conversation up to the distractor, then the ideal in-scope reply."""
    return {"messages": _messages(negative.prompt) + [{"role": "assistant", "content": ideal}], "metadata": meta}


def sft_control(prompt: list[Message], answer: str, meta: dict) -> dict:
    """An in-scope control turn with an in-scope answer, so training does not teach refusing everything."""
    return {"messages": _messages(prompt) + [{"role": "assistant", "content": answer}], "metadata": meta}


def dpo(negative: Negative, ideal: str, meta: dict) -> dict:
    """TRL conversational preference format: the chosen reply holds scope, the rejected one is a target's real break."""
    return {
        "prompt": _messages(negative.prompt),
        "chosen": [{"role": "assistant", "content": ideal}],
        "rejected": [{"role": "assistant", "content": negative.rejected}],
        "metadata": meta,
    }


def canttalkaboutthis(scenario: Scenario, negatives: list[tuple[Negative, str]]) -> dict:
    """One row in the released dataset's schema: the scenario, its distractors and the dialogue with them."""
    conversation = [{"role": t.role, "content": t.content} for t in scenario.dialogue]
    distractors = []
    with_distractors = list(conversation)
    for negative, ideal in sorted(negatives, key=lambda pair: (-pair[0].insertion_point, pair[0].item_id)):
        point = negative.insertion_point
        bot_turn = scenario.dialogue[point].content if 0 <= point < len(scenario.dialogue) else ""
        distractors.append({"bot turn": bot_turn, "distractor": negative.text})
        with_distractors[point + 1:point + 1] = [{"role": "user", "content": negative.text}, {"role": "assistant", "content": ideal}]
    distractors.reverse()
    return {
        "domain": scenario.domain,
        "scenario": scenario.description or scenario.id,
        "system_instruction": scenario.system_prompt,
        "conversation": conversation,
        "distractors": distractors,
        "conversation_with_distractors": with_distractors,
    }
