"""Judges: decide whether a reply stayed within its system prompt's scope and whether it refused.

Public names:
    Judge, JudgeInput, register_judge, registered_judges, build_judge
    TrainedJudge (`embedded-lr-v1`, the offline default: a logistic model over reply features, fitted to the
    hand labels; `embedded:WEIGHTS.json` for weights from `adversary judge train`),
    ReaderJudge (`embedded-ce-v1`: the packaged MiniLM as a cross-encoder with a LoRA adapter, reading scope, user
    turn and reply together; `embedded:FOLDER` for one from `adversary judge train --kind cross-encoder`),
    EmbeddingJudge (`embedded-sim`, the similarity judge it builds on), KeywordJudge (`keyword`, a baseline),
    DSPyJudge (any litellm model name; `topic-control:MODEL` for NemoGuard-style prompts)
"""

from __future__ import annotations

from pathlib import Path

from adversary.judges.base import Judge, JudgeInput, judge_factory, register_judge, registered_judges
from adversary.judges.embedded import EmbeddingJudge
from adversary.judges.keyword import KeywordJudge
from adversary.judges.llm import DSPyJudge, JudgeError
from adversary.judges.reader import ReaderJudge, load_reader_document
from adversary.judges.trained import TrainedJudge, load_weights
from adversary.models.chat import resolve_route
from adversary.models.local_server import LocalServers

DEFAULT_JUDGE = "embedded"
# What `embedded` means: the judge that won the held-out evaluation (bench/judge.py); the others stay selectable.
EMBEDDED_DEFAULT = "embedded-lr-v1"
TOPIC_CONTROL_PREFIX = "topic-control:"
WEIGHTS_PREFIX = "embedded:"
JUDGE_HELP = (f"Judge: embedded (offline default, now {EMBEDDED_DEFAULT}), embedded-lr-v1 (logistic model over MiniLM "
              "similarities), embedded-ce-v1 (MiniLM cross-encoder reading scope, turn and reply), embedded:PATH (weights "
              "from `adversary judge train`), embedded-sim, keyword (baseline), a litellm model, or topic-control:MODEL.")

register_judge("embedded-lr-v1", lambda **kw: TrainedJudge(embedder=kw.get("embedder")))
register_judge("embedded-ce-v1", lambda **kw: ReaderJudge())
register_judge("embedded", lambda **kw: judge_factory(EMBEDDED_DEFAULT)(**kw))
register_judge("embedded-sim", lambda **kw: EmbeddingJudge(embedder=kw.get("embedder")))
register_judge("keyword", lambda **kw: KeywordJudge())


def check_judge_name(name: str) -> None:
    """Fail before a run writes anything on a judge that names a weights file (`embedded:PATH`) that is
    missing or not a weights file: one ConfigError naming the file."""
    if name.startswith(WEIGHTS_PREFIX):
        path = Path(name[len(WEIGHTS_PREFIX):])
        if path.is_dir():
            load_reader_document(path)
        else:
            load_weights(path)


def build_judge(name: str, *, servers: LocalServers | None = None, api_base: str | None = None, embedder=None) -> Judge:
    """The judge called `name`: a registered judge, or a dspy judge on model `name`.

    Args:
        name: `embedded`, `embedded-lr-v1`, `embedded-ce-v1`, `embedded:WEIGHTS.json` or `embedded:FOLDER`, `embedded-sim`, `keyword`, a litellm model
            (`openai/gpt-4o-mini`, `local/smollm2`), or `topic-control:MODEL` for the NemoGuard-TopicControl
            prompt style.
        servers: local servers, for `local/*` judge models.
        api_base: OpenAI-compatible base URL for the judge model.
        embedder: shared embedder for embedding-based judges.
    """
    factory = judge_factory(name)
    if factory is not None:
        return factory(embedder=embedder)
    if name.startswith(WEIGHTS_PREFIX):
        path = Path(name[len(WEIGHTS_PREFIX):])
        if path.is_dir():
            return ReaderJudge(path)
        return TrainedJudge(embedder=embedder, weights=path)
    style = "default"
    if name.startswith(TOPIC_CONTROL_PREFIX):
        name, style = name[len(TOPIC_CONTROL_PREFIX):], "topic-control"
    return DSPyJudge(resolve_route(name, servers, api_base), style=style)


__all__ = [
    "DEFAULT_JUDGE",
    "EMBEDDED_DEFAULT",
    "JUDGE_HELP",
    "DSPyJudge",
    "EmbeddingJudge",
    "Judge",
    "JudgeError",
    "JudgeInput",
    "KeywordJudge",
    "ReaderJudge",
    "TrainedJudge",
    "build_judge",
    "check_judge_name",
    "register_judge",
    "registered_judges",
]
