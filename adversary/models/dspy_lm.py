"""dspy language models for any route, and an adapter that makes small local models emit valid JSON.

Small embedded models rarely follow dspy's ChatAdapter or JSONAdapter formats. For them the
`SchemaJSONAdapter` sends the output fields' JSON schema as `response_format`, which llama.cpp turns
into a grammar, so every reply parses.
"""

from __future__ import annotations

from typing import Annotated, Any

import dspy
import pydantic
from dspy.adapters.json_adapter import JSONAdapter
from dspy.utils.callback import BaseCallback

from adversary.models.chat import ModelRoute
from adversary.models.embedded import is_local
from adversary.models.interrupt import raise_if_interrupted


def make_lm(route: ModelRoute, *, temperature: float = 0.0, max_tokens: int = 256, cache: bool = True) -> dspy.LM:
    """A dspy LM (which calls litellm) for `route`."""
    kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "cache": cache, "num_retries": 2}
    if route.api_base:
        kwargs["api_base"] = route.api_base
    if route.api_key:
        kwargs["api_key"] = route.api_key
    return dspy.LM(route.litellm_model, callbacks=[StopAfterCtrlC()], **kwargs)


class StopAfterCtrlC(BaseCallback):
    """Refuses to start an LM request after Ctrl-C, even if a library swallowed the KeyboardInterrupt (dspy's
    adapters retry a failed call in another format, which would otherwise send it again). dspy logs and
    ignores a callback's Exception, but a KeyboardInterrupt passes through."""

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        raise_if_interrupted()


def _output_schema(signature: type[dspy.Signature]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, field in signature.output_fields.items():
        annotation = field.annotation
        if annotation is bool:
            properties[name] = {"type": "boolean"}
        elif annotation in (int,):
            properties[name] = {"type": "integer"}
        elif annotation in (float,):
            properties[name] = {"type": "number"}
        else:
            full = pydantic.TypeAdapter(Annotated[str, field]).json_schema()
            properties[name] = {k: v for k, v in full.items() if k in ("type", "pattern", "minLength", "maxLength")}
    return {"type": "object", "properties": properties, "required": list(properties)}


class SchemaJSONAdapter(JSONAdapter):
    """JSONAdapter that always constrains output with the signature's JSON schema (llama.cpp grammar),
    including string `pattern` and length constraints declared on output fields."""

    def _prepare_response_format(self, lm, lm_kwargs, signature):
        lm_kwargs["response_format"] = {"type": "json_object", "schema": _output_schema(signature)}


def adapter_for(route: ModelRoute) -> dspy.Adapter:
    """The adapter that works best for `route`: schema-constrained JSON for local models."""
    if is_local(route.name):
        return SchemaJSONAdapter()
    return dspy.ChatAdapter()
