"""The embedded models' server: an OpenAI-compatible chat endpoint over llama.cpp with parallel slots.

Run as `python -m adversary.models.llama_server` (`local_server` starts it). llama-cpp-python's own server
answers one request at a time; this one decodes up to `--slots` requests in one llama.cpp batch (continuous
batching: a request joins the running batch as soon as a slot is free, its prompt evaluated in chunks beside the
others' next tokens). Each slot is a llama.cpp sequence with its own KV cells of `--n_ctx` tokens and keeps them
after its request, so a request sharing a prefix with a slot (core.slots chooses which) evaluates only the rest;
states of overwritten slots go to a RAM cache of `--cache_mb` megabytes and are restored into a slot when a
later request shares more with them.

Sampling follows llama-cpp-python's server (repeat penalty 1.1, top-k 40, top-p 0.95, min-p 0.05, then the
temperature, seeded by the request's `seed`), and the prompt is its chat template's, tokenized as it does.
Batched decoding is not bit-identical to one-at-a-time decoding: logits agree up to float rounding, which can
change a sampled token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import queue
import random
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp
from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse
from llama_cpp import _internals as internals
from llama_cpp.llama_chat_format import Jinja2ChatFormatter, _grammar_for_response_format
from llama_cpp.llama_grammar import LlamaGrammar

from adversary.core.slots import StateCache, choose_slot, reusable, worth_saving, worth_waiting
from adversary.models.local_server import MAX_SLOTS

BATCH_TOKENS = 512
"""Tokens per llama.cpp decode: every generating slot's next token, then chunks of newly admitted prompts."""
PENALTY_LAST_N = 64
REPEAT_PENALTY = 1.1
TOP_K = 40
TOP_P = 0.95
MIN_P = 0.05


class RequestError(ValueError):
    """A request this server cannot answer (its message goes back as HTTP 400)."""


@dataclass
class Completion:
    """A finished request: its text, why it ended, and its token counts (`reused_tokens`: prompt tokens a slot or
    the state cache already held)."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reused_tokens: int


@dataclass
class Request:
    """A tokenized chat request and where its outcome goes (called once, from the engine's thread)."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    seed: int
    stop: list[str]
    done: Callable[[Completion | BaseException], None]
    top_k: int = TOP_K
    top_p: float = TOP_P
    min_p: float = MIN_P
    repeat_penalty: float = REPEAT_PENALTY
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    ignore_eos: bool = False
    """Decode `max_tokens` tokens whatever the model samples (benchmarks compare servers at fixed reply lengths)."""
    grammar: LlamaGrammar | None = None
    """Constrains sampling (dspy's JSON output schema arrives as `response_format`, as llama-cpp-python takes it)."""


@dataclass
class _Slot:
    seq: int
    held: list[int] = field(default_factory=list)
    """Tokens whose KV cells this slot's sequence holds, in position order."""
    request: Request | None = None
    pending: list[int] = field(default_factory=list)
    """Prompt tokens of the request not yet decoded."""
    sampler: internals.LlamaSampler | None = None
    next_token: int | None = None
    """The last sampled token, decoded in the next step."""
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    reused: int = 0


@dataclass
class EngineStats:
    """Counters of one server's life, served at /stats for benchmarks."""

    requests: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    decode_calls: int = 0
    restored_states: int = 0
    saved_states: int = 0
    decode_seconds: float = 0.0
    """Wall time spent in llama.cpp's decode and sampling: the rest of a client's wait is queueing and HTTP."""


class BatchedEngine:
    """Decodes the requests of up to `slots` slots in one llama.cpp batch, on its own thread."""

    def __init__(self, llama: llama_cpp.Llama, slots: int, slot_context: int, threads: int, cache_bytes: int):
        self.llama = llama
        self.slots = [_Slot(seq=i) for i in range(slots)]
        self.slot_context = slot_context
        params = llama_cpp.llama_context_params.from_buffer_copy(llama.context_params)  # llama-cpp-python's settings
        params.n_ctx = slots * slot_context
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        params.n_seq_max = slots
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False  # each slot its own cells of slot_context tokens
        params.no_perf = True
        # Flash attention stays off, as llama-cpp-python has it: on, 8 slots answered 1.67 times one slot's calls per
        # second instead of 1.50, but logits depended on how a prompt was split into batches (0.58 apart on the
        # embedded model), so every reused prefix would change replies; off, a reused prefix gives the same logits.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._context = internals.LlamaContext(model=llama._model, params=params, verbose=False)
        self._ctx = self._context.ctx
        if llama._lora_adapter is not None:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(llama._lora_adapter)
            scales = (ctypes.c_float * 1)(llama.lora_scale)
            if llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, scales):
                raise RuntimeError(f"llama.cpp refused the LoRA adapter {llama.lora_path}")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = llama._model.vocab
        self._batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._cache: StateCache[ctypes.Array] = StateCache(cache_bytes)
        self._last_used: dict[int, int] = {}
        self._admitted = 0
        self._waiting: deque[Request] = deque()
        self._inbox: queue.Queue[Request] = queue.Queue()
        self.stats = EngineStats()
        self._thread = threading.Thread(target=self._run, name="batched-engine", daemon=True)
        self._thread.start()

    def report(self) -> dict:
        """The counters, the slots and the state cache's contents (/stats, and the log line at shutdown)."""
        return {**self.stats.__dict__, "slots": len(self.slots), "slot_context": self.slot_context,
                "cached_states": len(self._cache), "cache_bytes": self._cache.size_bytes}

    def submit(self, request: Request) -> None:
        """Queue `request`; its `done` is called with a Completion or the exception that ended it."""
        self._inbox.put(request)

    # -- the engine's thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            busy = any(slot.request is not None for slot in self.slots)
            if not busy and not self._waiting:
                self._waiting.append(self._inbox.get())
            with contextlib.suppress(queue.Empty):
                while True:
                    self._waiting.append(self._inbox.get_nowait())
            try:
                self._admit_waiting()
                if any(slot.request is not None for slot in self.slots):
                    self._step()
            except Exception as exc:  # a bug must fail the requests in hand, not hang every client
                traceback.print_exc()
                self._fail_all(RuntimeError(f"batched engine error: {exc!r}"))

    def _fail_all(self, error: BaseException) -> None:
        """End every admitted request with `error` and empty every slot's cells."""
        for slot in self.slots:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
            slot.held = []
            if slot.request is not None:
                self._finish(slot, error)

    def _admit_waiting(self) -> None:
        """Admit waiting requests, oldest first, while slots are free; a request that shares more of a prompt a busy
        slot is still evaluating waits for it (core.slots.worth_waiting) and copies its cells when they are there."""
        for request in list(self._waiting):
            if not any(slot.request is None for slot in self.slots):
                return
            filling = [slot.held + slot.pending for slot in self.slots if slot.request is not None and slot.pending]
            if filling:
                held = [slot.held for slot in self.slots if slot.held] + self._cache.keys()
                available = max((reusable(tokens, request.prompt) for tokens in held), default=0)
                if worth_waiting(request.prompt, available, filling):
                    continue
            self._waiting.remove(request)
            try:
                self._admit(request)
            except Exception as exc:
                request.done(RuntimeError(f"batched engine error: {exc!r}"))
                raise

    def _admit(self, request: Request) -> None:
        idle = {slot.seq: slot.held for slot in self.slots if slot.request is None}
        busy = {tuple(slot.held): slot for slot in self.slots if slot.request is not None and slot.held}
        choice = choose_slot(idle, self._last_used, request.prompt, [*self._cache.keys(), *busy])
        slot = self.slots[choice.slot]
        self._admitted += 1
        self._last_used[slot.seq] = self._admitted
        state = None
        if choice.restore is not None:  # taken before the slot's own state is saved, which may supersede it
            donor = busy.get(choice.restore)
            state = self._state_of(donor) if donor is not None else self._cache.get(choice.restore)
        if worth_saving(slot.held, 0 if choice.restore is not None else choice.keep):
            self._save(slot)
        if choice.restore is not None:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
            if state is None or llama_cpp.llama_state_seq_set_data(self._ctx, state, len(state), slot.seq) == 0:
                slot.held = []
            else:
                slot.held = list(choice.restore)
                self.stats.restored_states += 1
        keep = min(choice.keep, len(slot.held))
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq, keep, -1)
        del slot.held[keep:]
        sampler = internals.LlamaSampler()
        sampler.add_penalties(self.llama.n_vocab(), PENALTY_LAST_N, request.repeat_penalty, request.frequency_penalty,
                              request.presence_penalty)
        if request.grammar is not None:
            sampler.add_grammar(self.llama._model, request.grammar)
        if request.temperature <= 0.0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(request.top_k)
            sampler.add_typical(1.0, 1)
            sampler.add_top_p(request.top_p, 1)
            sampler.add_min_p(request.min_p, 1)
            sampler.add_temp(request.temperature)
            sampler.add_dist(request.seed)
        slot.request, slot.sampler, slot.pending = request, sampler, request.prompt[keep:]
        slot.next_token, slot.generated, slot.text, slot.reused = None, [], bytearray(), keep
        self.stats.requests += 1
        self.stats.prompt_tokens += len(request.prompt)
        self.stats.reused_tokens += keep

    def _state_of(self, slot: _Slot) -> ctypes.Array | None:
        """A copy of `slot`'s KV cells (None if llama.cpp cannot give it)."""
        size = llama_cpp.llama_state_seq_get_size(self._ctx, slot.seq)
        state = (ctypes.c_uint8 * size)()
        return state if llama_cpp.llama_state_seq_get_data(self._ctx, state, size, slot.seq) == size else None

    def _save(self, slot: _Slot) -> None:
        key = tuple(slot.held)
        if key in self._cache or not self._cache.capacity_bytes:
            return
        state = self._state_of(slot)
        if state is not None:
            self._cache.put(key, state, len(state))
            self.stats.saved_states += 1

    def _step(self) -> None:
        """One llama.cpp decode: every generating slot's next token, then prompt chunks; then sample."""
        batch, n, outputs = self._batch, 0, []

        def add(slot: _Slot, token: int, wants_logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = len(slot.held)
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.seq
            batch.logits[n] = wants_logits
            slot.held.append(token)
            if wants_logits:
                outputs.append((slot, n))
            n += 1

        active = [slot for slot in self.slots if slot.request is not None]
        for slot in active:
            if slot.next_token is not None:
                add(slot, slot.next_token, True)
                slot.next_token = None
        for slot in active:
            if slot.pending and n < BATCH_TOKENS:
                chunk, slot.pending = slot.pending[:BATCH_TOKENS - n], slot.pending[BATCH_TOKENS - n:]
                for i, token in enumerate(chunk):
                    add(slot, token, not slot.pending and i == len(chunk) - 1)
        batch.n_tokens = n
        if n == 0:
            return
        self.stats.decode_calls += 1
        started = time.perf_counter()
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            self._fail_all(RuntimeError(f"llama.cpp decode failed with status {status}"))
            return
        for slot, index in outputs:
            token = llama_cpp.llama_sampler_sample(slot.sampler.sampler, self._ctx, index)
            self._accept(slot, token)
        self.stats.decode_seconds += time.perf_counter() - started

    def _accept(self, slot: _Slot, token: int) -> None:
        request = slot.request
        if llama_cpp.llama_vocab_is_eog(self._vocab, token) and not request.ignore_eos:
            self._complete(slot, "stop")
            return
        slot.generated.append(token)
        slot.text += self.llama._model.detokenize([token])
        self.stats.generated_tokens += 1
        if request.stop:
            text = slot.text.decode("utf-8", errors="ignore")
            hits = [text.find(stop) for stop in request.stop if stop and stop in text]
            if hits:
                self._complete(slot, "stop", text[:min(hits)])
                return
        if len(slot.generated) >= request.max_tokens:
            self._complete(slot, "length")
        else:
            slot.next_token = token

    def _complete(self, slot: _Slot, reason: str, text: str | None = None) -> None:
        request = slot.request
        completion = Completion(text=text if text is not None else slot.text.decode("utf-8", errors="ignore"),
                                finish_reason=reason, prompt_tokens=len(request.prompt),
                                completion_tokens=len(slot.generated), reused_tokens=slot.reused)
        self._finish(slot, completion)

    def _finish(self, slot: _Slot, outcome: Completion | BaseException) -> None:
        request = slot.request
        if slot.sampler is not None:
            slot.sampler.close()
        slot.request, slot.sampler, slot.pending, slot.next_token = None, None, [], None
        try:
            request.done(outcome)
        except Exception:  # a client that went away must not stop the engine
            pass


class ChatPrompts:
    """Chat messages to prompt tokens and stop strings, as llama-cpp-python's server makes them from the model's
    own chat template."""

    def __init__(self, llama: llama_cpp.Llama):
        self.llama = llama
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeError("the model's GGUF has no chat template")
        eos_id = llama.token_eos()
        token = lambda t: llama._model.token_get_text(t) if t >= 0 else ""  # noqa: E731
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=token(eos_id),
                                              bos_token=token(llama.token_bos()), stop_token_ids=[eos_id])

    def __call__(self, messages: list[dict]) -> tuple[list[int], list[str]]:
        result = self._formatter(messages=messages)
        tokens = self.llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, stop


def create_app(engine: BatchedEngine, prompts: ChatPrompts, alias: str):
    """The HTTP app: /v1/models, /v1/chat/completions (non-streaming), /health and /stats."""
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        print(f"served: {json.dumps(engine.report())}", file=sys.stderr, flush=True)

    app = FastAPI(lifespan=lifespan)
    created = int(time.time())

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": alias, "object": "model", "created": created, "owned_by": "me"}]}

    @app.get("/stats")
    def stats() -> dict:
        return engine.report()

    @app.post("/v1/chat/completions")
    async def chat(http_request: HttpRequest):
        try:
            request_body = await http_request.json()
            completion = await _complete(engine, prompts, request_body)
        except RequestError as exc:
            return JSONResponse(status_code=400, content={"error": {"message": str(exc), "type": "invalid_request_error"}})
        except RuntimeError as exc:
            return JSONResponse(status_code=500, content={"error": {"message": str(exc), "type": "server_error"}})
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": request_body.get("model") or alias,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                         "logprobs": None, "finish_reason": completion.finish_reason}],
            "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
                      "total_tokens": completion.prompt_tokens + completion.completion_tokens},
        }

    return app


async def _complete(engine: BatchedEngine, prompts: ChatPrompts, body: dict) -> Completion:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list")
    if body.get("stream"):
        raise RequestError("streaming is not supported")
    try:
        prompt, template_stop = prompts(messages)
    except Exception as exc:
        raise RequestError(f"cannot apply the chat template: {exc}") from None
    try:
        grammar = _grammar(body)
    except Exception as exc:
        raise RequestError(f"bad grammar or response_format: {exc}") from None
    room = engine.slot_context - len(prompt)
    if room < 1:
        raise RequestError(f"the prompt has {len(prompt)} tokens; a slot holds {engine.slot_context}")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    seed = body.get("seed")
    try:
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 16
        request_fields = dict(max_tokens=min(int(max_tokens), room), temperature=float(body.get("temperature", 0.8)),
                              seed=int(seed) if seed is not None else random.getrandbits(32),
                              top_k=int(body.get("top_k", TOP_K)), top_p=float(body.get("top_p", TOP_P)),
                              min_p=float(body.get("min_p", MIN_P)),
                              repeat_penalty=float(body.get("repeat_penalty", REPEAT_PENALTY)),
                              frequency_penalty=float(body.get("frequency_penalty", 0.0)),
                              presence_penalty=float(body.get("presence_penalty", 0.0)),
                              ignore_eos=bool(body.get("ignore_eos", False)), grammar=grammar)
    except (TypeError, ValueError) as exc:
        raise RequestError(f"bad sampling setting: {exc}") from None
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future = loop.create_future()

    def done(result: Completion | BaseException) -> None:
        loop.call_soon_threadsafe(lambda: outcome.done() or outcome.set_result(result))

    engine.submit(Request(prompt=prompt, stop=stop + template_stop, done=done, **request_fields))
    result = await outcome
    if isinstance(result, BaseException):
        raise RuntimeError(str(result))
    return result


def _grammar(body: dict) -> LlamaGrammar | None:
    """The request's sampling grammar, as llama-cpp-python's server reads it: `response_format` of type json_object
    (with its `schema`, or any JSON), or a GBNF `grammar` string."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return _grammar_for_response_format(response_format)
    if body.get("grammar"):
        return LlamaGrammar.from_string(body["grammar"], verbose=False)
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m adversary.models.llama_server", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF weights")
    parser.add_argument("--model_alias", required=True, help="the model name clients send")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n_ctx", type=int, default=4096, help="context tokens of each slot")
    parser.add_argument("--n_threads", type=int, default=1)
    parser.add_argument("--slots", type=int, default=1, help=f"requests decoded at once (1 to {MAX_SLOTS})")
    parser.add_argument("--cache_mb", type=int, default=0, help="megabytes of saved prompt states (0: none)")
    parser.add_argument("--lora_path", default=None, help="a GGUF LoRA adapter applied on top of the weights")
    parser.add_argument("--lora_scale", type=float, default=1.0, help="the factor the adapter's update is multiplied by")
    args = parser.parse_args(argv)
    if not 1 <= args.slots <= MAX_SLOTS:
        parser.error(f"--slots must be between 1 and {MAX_SLOTS}, not {args.slots}")
    if args.n_ctx < 64:
        parser.error(f"--n_ctx must be at least 64 tokens per slot, not {args.n_ctx}")
    return args


def _exit_with_parent(interval_s: float = 2.0) -> None:
    """Exit when the process that started this server is gone (a `kill -9`ed campaign cannot stop its server, and an
    orphaned server would hold its CPUs and memory and make the next campaign share them)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import uvicorn

    _exit_with_parent()

    llama = llama_cpp.Llama(model_path=args.model, n_ctx=64, n_batch=64, n_threads=args.n_threads,
                            n_threads_batch=args.n_threads, lora_path=args.lora_path, lora_scale=args.lora_scale,
                            verbose=False)
    engine = BatchedEngine(llama, args.slots, args.n_ctx, args.n_threads, args.cache_mb << 20)
    app = create_app(engine, ChatPrompts(llama), args.model_alias)
    print(f"serving {args.model_alias} on http://{args.host}:{args.port}/v1 with {args.slots} slot(s) of "
          f"{args.n_ctx} tokens", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
