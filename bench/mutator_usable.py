"""How often the LLM mutation operators give a usable candidate on a mutator model (default: the embedded one).

Usable = well-formed (passes `usable_rewrite` / `usable_lead_in` / `usable_pivot`), non-empty, and not a near-duplicate of
its parent (cosine < the campaign's duplicate threshold). A call is one operator application, which may
use up to `ATTEMPTS` generations when the first is unusable; `generations` counts what the model was asked for.
Prints one line per operator and a JSON summary.

    python bench/mutator_usable.py [--model local/smollm2] [--calls-per-operator 25] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from adversary.campaign import CampaignConfig
from adversary.corpus import load_path, starter_corpus_dir
from adversary.models.chat import resolve_route
from adversary.models.embedded import DEFAULT_EMBEDDING_MODEL
from adversary.models.embedder import get_embedder
from adversary.models.local_server import LocalServers
from adversary.strategies import Parent, get_strategy
from adversary.strategies._llm import LLMRewriter

OPERATORS = ("llm-emotional", "llm-socratic", "llm-subtler", "paraphrase")


class Recording:
    """Passes calls to a rewriter and keeps its last raw output, to show what was rejected."""

    def __init__(self, rewriter):
        self.rewriter = rewriter
        self.last = None

    def rewrite(self, instruction, bot_topic, message):
        self.last = self.rewriter.rewrite(instruction, bot_topic, message)
        return self.last

    def pivot(self, bot_topic, message):
        self.last = self.rewriter.pivot(bot_topic, message)
        return self.last

    def lead_in(self, instruction, bot_topic, request, question=False):
        self.last = self.rewriter.lead_in(instruction, bot_topic, request, question)
        return self.last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/smollm2")
    parser.add_argument("--calls-per-operator", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--operators", nargs="+", default=list(OPERATORS), help="LLM operators to measure")
    parser.add_argument("--show", action="store_true", help="print every parent and what the operator made of it")
    args = parser.parse_args()
    corpus = load_path(starter_corpus_dir())
    threshold = CampaignConfig().duplicate_threshold
    embedder = get_embedder(DEFAULT_EMBEDDING_MODEL)
    rng = np.random.default_rng(args.seed)
    summary = {}
    with LocalServers() as servers:
        rewriter = Recording(LLMRewriter(resolve_route(args.model, servers, None)))
        started = time.perf_counter()
        for name in args.operators:
            operator = get_strategy(name)
            counts = {"calls": 0, "usable": 0, "rejected": 0, "duplicate": 0}
            generations_before = rewriter.rewriter.calls
            for _ in range(args.calls_per_operator):
                d = corpus.distractors[int(rng.integers(len(corpus.distractors)))]
                scenario = corpus.scenarios[int(rng.integers(len(corpus.scenarios)))]
                counts["calls"] += 1
                proposal = operator.mutate([Parent(d.id, d.text, d.style.value)], scenario, rng, rewriter)
                if proposal is None:
                    counts["rejected"] += 1
                    if args.show:
                        print(f"  [{name}] REJECTED {d.text!r}\n      -> {rewriter.last!r}")
                    continue
                vectors = embedder.embed([d.text, proposal.text])
                if float(vectors[0] @ vectors[1]) >= threshold:
                    counts["duplicate"] += 1
                    if args.show:
                        print(f"  [{name}] DUPLICATE {d.text!r}\n      -> {proposal.text!r}")
                    continue
                counts["usable"] += 1
                if args.show:
                    print(f"  [{name}] ok {d.text!r}\n      -> {proposal.text!r}")
            counts["usable_fraction"] = counts["usable"] / counts["calls"]
            counts["generations"] = rewriter.rewriter.calls - generations_before
            summary[name] = counts
            print(f"{name:14s} usable {counts['usable']}/{counts['calls']} ({100 * counts['usable_fraction']:.0f}%), "
                  f"rejected {counts['rejected']}, duplicate {counts['duplicate']}, "
                  f"{counts['generations']} generations", flush=True)
        total = sum(c["calls"] for c in summary.values())
        usable = sum(c["usable"] for c in summary.values())
        print(json.dumps({"model": args.model, "usable_fraction": usable / total, "calls": total,
                          "generations": rewriter.rewriter.calls,
                          "seconds": round(time.perf_counter() - started, 1), "operators": summary}))


if __name__ == "__main__":
    main()
