"""Does batched decoding pay on this CPU? The embedded model's server with 1 slot against N slots, same requests,
same cores, one run.

    python bench/server_slots.py [--cores 0,1] [--slots 1 4 8] [--requests 48] [--tokens 96] [--python-server]
                                 [--llama-server PATH]

It sends a campaign's real mix of requests (starter scenarios at their insertion points with seed distractors, in
the prefix order a campaign sends them, each with its own seed) with as many in flight as the server has slots,
every reply decoded to exactly `--tokens` tokens (end-of-text ignored), and prints calls and tokens per second, the
server's RSS and its prompt-reuse counters per slot count, and `batched_decoding_speedup` (calls per second of N
slots over one). `--python-server` adds llama-cpp-python's own server (what `adversary` ran before, one request at
a time; it cannot fix reply lengths, so compare its tokens per second); `--llama-server` adds llama.cpp's server
binary, for users who build one. `bench/run.py` runs the same comparison as its `batching` section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adversary.campaign import CampaignConfig  # noqa: E402
from adversary.corpus import load_path, starter_corpus_dir  # noqa: E402
from adversary.models.embedded import CHAT_MODELS  # noqa: E402
from adversary.models.local_server import SERVER_MODULE, _free_port, server_command  # noqa: E402

PER_PREFIX = 4
"""Requests per scenario and insertion point: a campaign sends a generation's trials of one prefix together."""


def campaign_requests(count: int) -> list[tuple[list[dict], int]]:
    """`count` (messages, seed) requests: the starter scenarios at each usable insertion point, PER_PREFIX seed
    distractors each, grouped by prefix as a campaign sends them."""
    corpus = load_path(starter_corpus_dir())
    texts = [d.text for d in corpus.distractors]
    prefixes = [(scenario, point) for scenario in corpus.scenarios for point in scenario.usable_insertion_points]
    order = [prefixes[(i * 5) % len(prefixes)] for i in range(len(prefixes))]  # scenarios take turns
    requests = []
    for index in range(count):
        scenario, point = order[(index // PER_PREFIX) % len(order)]
        text = texts[(index * 7) % len(texts)]
        messages = [m.model_dump() for m in scenario.messages_until(point)] + [{"role": "user", "content": text}]
        requests.append((messages, 1000 + index))
    return requests


def _post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=900) as response:
        return json.load(response)


def _get(port: int, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def chat(port: int, messages: list[dict], seed: int, tokens: int, ignore_eos: bool = True) -> int:
    """One chat completion decoding `tokens` tokens (at most `tokens` when the reply may end, `ignore_eos=False`);
    the number of tokens it decoded."""
    body = {"messages": messages, "max_tokens": tokens, "n_predict": tokens, "ignore_eos": ignore_eos,
            "temperature": CampaignConfig.temperature, "seed": seed, "cache_prompt": True}
    return _post(port, "/v1/chat/completions", body)["usage"]["completion_tokens"]


def wait_ready(port: int, path: str, process: subprocess.Popen) -> None:
    for _ in range(480):
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it answered")
        if _get(port, path) is not None:
            return
        time.sleep(0.25)
    raise RuntimeError("the server did not answer within 2 minutes")


def measure(command: list[str], port: int, ready_path: str, in_flight: int, requests: list, tokens: int,
            log: Path, ignore_eos: bool = True) -> dict:
    """Start the server, warm it with one request, send every request with `in_flight` at once, stop it."""
    with log.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            wait_ready(port, ready_path, process)
            chat(port, [{"role": "user", "content": "warm up"}], 0, 4)
            before = _get(port, "/stats")
            started = time.monotonic()
            with ThreadPoolExecutor(in_flight) as pool:
                decoded = sum(pool.map(lambda request: chat(port, request[0], request[1], tokens, ignore_eos),
                                       requests))
            wall = time.monotonic() - started
            after = _get(port, "/stats")
            rss_kb = int(Path(f"/proc/{process.pid}/status").read_text().split("VmRSS:")[1].split()[0])
        finally:
            process.terminate()
            process.wait()
    row = {"requests": len(requests), "tokens_decoded": decoded, "wall_s": round(wall, 2),
           "calls_per_s": round(len(requests) / wall, 3), "tokens_per_s": round(decoded / wall, 1),
           "rss_mb": rss_kb // 1024}
    if before and after:
        prompt = after["prompt_tokens"] - before["prompt_tokens"]
        row["prompt_tokens"] = prompt
        row["prompt_tokens_reused"] = after["reused_tokens"] - before["reused_tokens"]
        row["states_copied"] = after["restored_states"] - before["restored_states"]
    return row


def _pinned(cores: str | None, command: list[str]) -> list[str]:
    return ["taskset", "-c", cores, *command] if cores else command


def compare(model: Path, cores: str | None, slot_counts: list[int], requests: list, tokens: int, log_dir: Path,
            python_server: bool = False, llama_server: Path | None = None, cache_mb: int = 1024) -> dict:
    """Every server variant on the same requests and cores, one after the other; `batched_decoding_speedup` of the
    largest slot count over one slot, and the one-slot server against llama-cpp-python's."""
    threads = len(cores.split(",")) if cores else len(os.sched_getaffinity(0))
    rows = []
    for slots in slot_counts:
        port = _free_port()
        command = server_command(model, "smollm2", port, 4096, threads, cache_mb, slots=slots)
        rows.append({"server": SERVER_MODULE, "slots": slots,
                     **measure(_pinned(cores, command), port, "/v1/models", slots, requests, tokens,
                               log_dir / f"slots-{slots}.log")})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if python_server:
        port = _free_port()
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(port),
                   "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", "4096",
                   "--verbose", "False"]
        rows.append({"server": "llama_cpp.server", "slots": 1,
                     **measure(_pinned(cores, command), port, "/v1/models", 1, requests, tokens,
                               log_dir / "llama-cpp-python.log")})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if llama_server is not None:
        for slots in slot_counts:
            port = _free_port()
            command = [str(llama_server), "-m", str(model), "--port", str(port), "-np", str(slots),
                       "-c", str(4096 * slots), "-t", str(threads), "-tb", str(threads), "--no-webui"]
            rows.append({"server": "llama-server", "slots": slots,
                         **measure(_pinned(cores, command), port, "/health", slots, requests, tokens,
                                   log_dir / f"llama-server-{slots}.log")})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    ours = {row["slots"]: row for row in rows if row["server"] == SERVER_MODULE}
    result: dict = {"cores": cores or ",".join(map(str, sorted(os.sched_getaffinity(0)))), "threads": threads,
                    "requests": len(requests), "tokens_per_reply": tokens, "runs": rows}
    if 1 in ours and len(ours) > 1:
        most = max(ours)
        result["batched_decoding_speedup"] = round(ours[most]["calls_per_s"] / ours[1]["calls_per_s"], 3)
        result["slots"] = most
        result["tokens_decoded"] = {f"{n} slot(s)": ours[n]["tokens_decoded"] for n in sorted(ours)}
    python_row = next((row for row in rows if row["server"] == "llama_cpp.server"), None)
    if python_row and 1 in ours:
        result["one_slot_over_llama_cpp_python_tokens_per_s"] = round(
            ours[1]["tokens_per_s"] / python_row["tokens_per_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=CHAT_MODELS["local/smollm2"].weights_path())
    parser.add_argument("--cores", default=None, help="CPUs for the servers (taskset list; default: this process's)")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--tokens", type=int, default=CampaignConfig.max_tokens, help="tokens decoded per request")
    parser.add_argument("--python-server", action="store_true", help="also llama-cpp-python's server, one in flight")
    parser.add_argument("--llama-server", type=Path, default=None, help="also this llama.cpp llama-server binary")
    args = parser.parse_args()
    if args.model is None or not args.model.is_file():
        sys.exit("the embedded model is not installed; pass --model PATH.gguf")
    if args.llama_server is not None and not args.llama_server.is_file():
        sys.exit(f"{args.llama_server}: no such llama-server binary")
    with tempfile.TemporaryDirectory(prefix="server-slots-") as logs:
        result = compare(args.model, args.cores, args.slots, campaign_requests(args.requests), args.tokens, Path(logs),
                         args.python_server, args.llama_server)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
