"""Ideal replies for training data, written by a model through dspy and kept only when the judge agrees."""

from __future__ import annotations

import logging
from typing import Protocol

import dspy

from adversary.models.chat import ModelRoute
from adversary.models.dspy_lm import adapter_for, make_lm

REPLY_PATTERN = r"^[A-Z][^{}\n\"]{15,400}[.!?]$"


class WriteRedirect(dspy.Signature):
    """You are the support bot defined by the system prompt. The customer's message is outside your scope.
    Reply in one or two sentences: decline briefly and kindly, then steer back to what you can help with.
    Do not answer the off-topic request."""

    system_prompt: str = dspy.InputField(desc="the bot's instructions and scope")
    customer_message: str = dspy.InputField(desc="the off-topic message")
    reply: str = dspy.OutputField(desc="the bot's short redirecting reply", pattern=REPLY_PATTERN, max_length=420)


class WriteAnswer(dspy.Signature):
    """You are the support bot defined by the system prompt. Answer the customer's in-scope question
    helpfully in one to three sentences, in the bot's voice."""

    system_prompt: str = dspy.InputField(desc="the bot's instructions and scope")
    customer_message: str = dspy.InputField(desc="the customer's in-scope question")
    reply: str = dspy.OutputField(desc="the bot's helpful answer", pattern=REPLY_PATTERN, max_length=420)


class ReplyWriter(Protocol):
    """Writes the reply a well-behaved bot would give; None when it could not."""

    name: str

    def redirect(self, system_prompt: str, customer_message: str, attempt: int = 0) -> str | None: ...

    def answer(self, system_prompt: str, customer_message: str, attempt: int = 0) -> str | None: ...


class DSPyReplyWriter:
    """The two dspy programs on one litellm model (default: the embedded one).

    Replies are cached (dspy's disk cache) per input and `attempt`: a retry samples a new reply instead of
    reading back the rejected one, and exporting the same run in another format reuses the replies
    already written instead of asking the model again.
    """

    def __init__(self, route: ModelRoute, temperature: float = 0.7):
        logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
        self.name = route.name
        self._lm = make_lm(route, temperature=temperature, max_tokens=160, cache=True)
        self._adapter = adapter_for(route)
        self._redirect = dspy.Predict(WriteRedirect)
        self._answer = dspy.Predict(WriteAnswer)

    def _run(self, program: dspy.Predict, system_prompt: str, customer_message: str, attempt: int) -> str | None:
        try:
            with dspy.context(lm=self._lm, adapter=self._adapter):
                out = program(system_prompt=system_prompt, customer_message=customer_message,
                              config={"rollout_id": attempt})
        except Exception:
            return None
        text = str(out.reply).strip()
        return text or None

    def redirect(self, system_prompt: str, customer_message: str, attempt: int = 0) -> str | None:
        return self._run(self._redirect, system_prompt, customer_message, attempt)

    def answer(self, system_prompt: str, customer_message: str, attempt: int = 0) -> str | None:
        return self._run(self._answer, system_prompt, customer_message, attempt)
