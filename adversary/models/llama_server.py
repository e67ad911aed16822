"""The embedded models' server: llama-cpp-python's OpenAI-compatible server with a prompt-prefix state cache.

Run as `python -m adversary.models.llama_server` with llama_cpp.server's arguments (`local_server` starts it
with the cache on). Without a cache, llama.cpp reuses only the previous call's prompt, so a campaign that
moves between scenarios, insertion points and mutator prompts re-evaluates about 300 prompt tokens on most
calls (about 1.8 s of a 3.4 s call on one core). `PrefixStateCache` keeps the model state after each call and restores the one sharing the
longest prefix with the next prompt. The sampling seed is not restored, so a call samples as it would
without the cache, from logits that agree up to float rounding (llama.cpp sums a prefix decoded in another
batch in another order); bench/prompt_cache.py measures the time saved and how many replies differ.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence

import llama_cpp
from llama_cpp.llama import LlamaState
from llama_cpp.llama_cache import LlamaRAMCache

from adversary.models.local_server import LORA_SCALE_FLAG


class PrefixCachingLlama(llama_cpp.Llama):
    """A Llama whose cached states are small and whose restored states keep its sampling seed.

    - `Llama.save_state` copies, and `Llama.load_state` writes back, a logits row for every prompt token
      (about 80 MB for 400 tokens of a 49k vocabulary) that nothing reads unless `logits_all` is set:
      sampling runs on llama.cpp's own logits, and a restored state is always followed by decoding at least
      one prompt token. Both see a one-row view of the logits instead.
    - `Llama.load_state` also restores the seed saved with the state, which would change what an unseeded
      call (the mutator's) samples and give two calls restoring the same state the same seed. The current
      seed is kept, so sampling goes on as it would without the cache.
    """

    lora_scale: float = 1.0
    """The adapter scale every instance gets (llama_cpp.server has no setting for it; `main` sets it)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("lora_scale", PrefixCachingLlama.lora_scale)
        super().__init__(*args, **kwargs)

    def save_state(self) -> LlamaState:
        if self._logits_all:
            return super().save_state()
        with self._one_row_of_logits():
            return super().save_state()

    def load_state(self, state: LlamaState) -> None:
        seed = self._seed
        if self._logits_all:
            super().load_state(state)
        else:
            with self._one_row_of_logits():
                super().load_state(state)
        self._seed = seed

    @contextlib.contextmanager
    def _one_row_of_logits(self) -> Iterator[None]:
        scores = self.scores
        self.scores = scores[:1]
        try:
            yield
        finally:
            self.scores = scores


class PrefixStateCache(LlamaRAMCache):
    """llama-cpp-python's RAM cache (least recently used out first), holding one state per prompt family.

    Every call saves its state, so states of calls sharing a long prefix (one scenario's conversation, one
    mutation instruction) pile up though any of them restores that prefix. A new state replaces the states
    it shares at least half of their tokens with, so the capacity holds many more families. The size counts
    what the states take in memory (llama-cpp-python counts only their KV bytes).
    """

    @property
    def cache_size(self) -> int:
        return sum(state.llama_state_size + state.scores.nbytes for state in self.cache_state.values())

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        key = tuple(key)
        for older in [k for k in self.cache_state if 2 * llama_cpp.Llama.longest_token_prefix(k, key) >= len(k)]:
            del self.cache_state[older]
        super().__setitem__(key, value)


def main() -> None:
    """llama_cpp.server's command line, with `PrefixCachingLlama` and `PrefixStateCache` in place of llama-cpp-python's
    model and RAM cache (its server looks both up on the `llama_cpp` module when it loads the model), and
    `--lora_scale X`, which llama_cpp.server lacks."""
    PrefixCachingLlama.lora_scale = _pop_lora_scale(sys.argv)
    llama_cpp.Llama = PrefixCachingLlama
    llama_cpp.LlamaRAMCache = PrefixStateCache
    from llama_cpp.server.__main__ import main as serve

    serve()


def _pop_lora_scale(argv: list[str]) -> float:
    """The value of `--lora_scale` in `argv` (1.0 when absent), removed from `argv` for llama_cpp.server's parser."""
    if LORA_SCALE_FLAG not in argv:
        return 1.0
    at = argv.index(LORA_SCALE_FLAG)
    value = float(argv[at + 1])
    del argv[at:at + 2]
    return value


if __name__ == "__main__":
    main()
