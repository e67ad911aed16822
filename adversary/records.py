"""Records that flow through adversary: scenarios, distractors, attempts and verdicts.

Every record is an immutable pydantic model that round-trips losslessly through JSON.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["user", "assistant"]


class Frozen(BaseModel):
    """Base for immutable records that reject unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(Frozen):
    """One chat turn."""

    role: Literal["system", "user", "assistant"]
    content: str


class Style(str, Enum):
    """How a distractor tries to pull the bot off its task."""

    TANGENTIAL = "tangential"
    EMOTIONAL = "emotional"
    SOCRATIC = "socratic"
    BLUNT = "blunt"
    ROLEPLAY = "roleplay"
    AUTHORITY = "authority"
    HUMAN = "human"
    """Written by people in an external dataset, with no style label."""


class Turn(Frozen):
    """A turn of a scenario's on-topic dialogue."""

    role: Role
    content: str = Field(min_length=1)


def stable_id(*parts: str, length: int = 12) -> str:
    """Content hash used as an identifier, so the same text always gets the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:length]


class Scenario(Frozen):
    """A scoped chatbot: its system prompt, an on-topic dialogue and where distractors may go.

    `insertion_points` are indices into `dialogue` of assistant turns after which a distractor
    (or an in-scope control turn) may be inserted. An empty dialogue (scope-only scenarios, such as
    OffTopicEval prompts) has the single insertion point -1: the distractor is the first user turn.
    """

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    domain: str = Field(min_length=1)
    description: str = ""
    system_prompt: str = Field(min_length=1)
    dialogue: tuple[Turn, ...] = ()
    insertion_points: tuple[int, ...] = ()
    controls: tuple[str, ...] = ()
    control_answers: tuple[tuple[str, str], ...] = ()
    """(control turn, the answer the bot should give) for the controls the corpus answers. Exports train on these
    before any model-written answer: a 135M writer's "answers" echo the system prompt or describe JSON."""
    fallback: str | None = None
    source: str = "adversary"

    @model_validator(mode="before")
    @classmethod
    def _answered_controls(cls, data):
        """A control may be written as `{text, answer}`: its text joins `controls`, the pair `control_answers`."""
        if not isinstance(data, dict) or not any(isinstance(c, dict) for c in data.get("controls") or ()):
            return data
        controls, answers = [], list(data.get("control_answers") or ())
        for control in data["controls"]:
            if isinstance(control, dict):
                if set(control) != {"text", "answer"}:
                    raise ValueError(f"a control written as a mapping has exactly the keys text and answer, not "
                                     f"{', '.join(sorted(control))}")
                controls.append(control["text"])
                answers.append((control["text"], control["answer"]))
            else:
                controls.append(control)
        return {**data, "controls": controls, "control_answers": answers}

    @field_validator("controls")
    @classmethod
    def _controls_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not c.strip() for c in value):
            raise ValueError("control turns must not be blank")
        return value

    @model_validator(mode="after")
    def _answers_not_blank(self) -> "Scenario":
        """An answer to a turn that is no longer a control is kept and unused: samples of the controls (an eval's
        --max-controls) keep their scenario's answers."""
        for control, answer in self.control_answers:
            if not answer.strip():
                raise ValueError(f"the answer to control {control!r} is blank")
        return self

    def answer_to(self, control: str) -> str | None:
        """The corpus's answer to one of its control turns, if it gives one."""
        return next((answer for turn, answer in self.control_answers if turn == control), None)

    @model_validator(mode="after")
    def _check_insertion_points(self) -> "Scenario":
        if not self.dialogue:
            if self.insertion_points not in ((), (-1,)):
                raise ValueError("a scenario without dialogue only has insertion point -1")
            return self
        for index in self.insertion_points:
            if not 0 <= index < len(self.dialogue):
                raise ValueError(f"insertion point {index} is outside the dialogue (0..{len(self.dialogue) - 1})")
            if self.dialogue[index].role != "assistant":
                raise ValueError(f"insertion point {index} is not an assistant turn")
        return self

    @property
    def usable_insertion_points(self) -> tuple[int, ...]:
        """The declared insertion points, or every assistant turn when none are declared."""
        if not self.dialogue:
            return (-1,)
        if self.insertion_points:
            return self.insertion_points
        return tuple(i for i, t in enumerate(self.dialogue) if t.role == "assistant")

    def messages_until(self, insertion_point: int) -> list[Message]:
        """System prompt and dialogue up to and including the assistant turn at `insertion_point`."""
        history = [Message(role="system", content=self.system_prompt)]
        history.extend(Message(role=t.role, content=t.content) for t in self.dialogue[: insertion_point + 1])
        return history


class Distractor(Frozen):
    """A user turn meant to steer a scoped bot out of its scope.

    A generic distractor (`scenario_id` is None) may be placed in any scenario; a bound one only in
    its own scenario, after `bot_turn` when given.
    """

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    text: str = Field(min_length=1)
    style: Style
    scenario_id: str | None = None
    bot_turn: int | None = None
    subtlety: int | None = Field(default=None, ge=1, le=3, description="1 blunt .. 3 subtle")
    source: str = "adversary"


class Corpus(Frozen):
    """Scenarios and seed distractors loaded from one or more files."""

    scenarios: tuple[Scenario, ...] = ()
    distractors: tuple[Distractor, ...] = ()

    def merged(self, other: "Corpus") -> "Corpus":
        """Both corpora; a later scenario or distractor with an already-seen id is dropped."""
        seen_s = {s.id for s in self.scenarios}
        seen_d = {d.id for d in self.distractors}
        return Corpus(
            scenarios=self.scenarios + tuple(s for s in other.scenarios if s.id not in seen_s),
            distractors=self.distractors + tuple(d for d in other.distractors if d.id not in seen_d),
        )


class Verdict(Frozen):
    """A judge's decision about one reply."""

    in_scope: bool
    refusal: bool
    judge: str
    score: float | None = None
    rationale: str | None = None


AttemptKind = Literal["distractor", "control"]
AttemptStatus = Literal["ok", "error"]


class Attempt(Frozen):
    """One target call for a placed distractor or control turn, with its reply and verdict.

    A failed call has status "error" and no verdict: it is neither a break nor a hold.
    """

    key: str
    target: str
    kind: AttemptKind
    scenario_id: str
    item_id: str
    style: str | None
    insertion_point: int
    trial: int
    seed: int
    messages: tuple[Message, ...]
    reply: str | None = None
    verdict: Verdict | None = None
    status: AttemptStatus = "ok"
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 1
    """Target calls this attempt took: 2 for a two-turn distractor (the bridge, then the pivot)."""

    @property
    def broke(self) -> bool | None:
        """True when the target left its scope on a distractor; None when not applicable."""
        if self.status != "ok" or self.verdict is None or self.kind != "distractor":
            return None
        return not self.verdict.in_scope


def canonical_json(value: object) -> str:
    """Stable JSON text for hashing and storage."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
