"""What the orchestrator and every worker share; imports no JAX, torch or Keras.

The grid (:class:`Case`), FLOP counts, the round-robin timer, result rows, and the JSON-lines
protocol between ``run.py`` and the worker processes (:func:`serve` on the worker side,
:class:`Worker` on the orchestrator's).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

KINDS = (
    "lstm", "gru", "simple_rnn", "min_gru", "min_lstm",
    "indrnn", "para_gru", "para_lstm", "lru", "rg_lru",
)  # fmt: skip
DEFAULT_KINDS = ("lstm", "gru", "simple_rnn")  # the others run when --kinds names them
# Parallel-in-time cells (no recurrent kernel): h_t = a_t * h_{t-1} + b_t, a and b from x_t.
MIN_KINDS = ("min_gru", "min_lstm")
# Diagonal cells (recurrent weights are vectors); the last two are linear, parallel in time.
DIAGONAL_KINDS = ("indrnn", "para_gru", "para_lstm", "lru", "rg_lru")
LINEAR_KINDS = (*MIN_KINDS, "lru", "rg_lru")
RNNJAX_ONLY_KINDS = (*MIN_KINDS, *DIAGONAL_KINDS)  # no peer implements them
TITLES = {
    "lstm": "LSTM",
    "gru": "GRU",
    "simple_rnn": "SimpleRNN",
    "min_gru": "MinGRU",
    "min_lstm": "MinLSTM",
    "indrnn": "IndRNN",
    "para_gru": "ParaGRU",
    "para_lstm": "ParaLSTM",
    "lru": "LRU",
    "rg_lru": "RG-LRU",
}
IMPLS = ("rnnjax", "linen", "nnx", "keras", "torch", "cudnn")  # the order tables show them
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1, "min_gru": 2, "min_lstm": 3}
GATES.update(indrnn=1, para_gru=3, para_lstm=3, lru=1, rg_lru=3)  # lru: [I, H] real parts
MODES = ("forward", "forward+backward")
DTYPES = ("float32", "bfloat16")
SHORT_DTYPE = {"float32": "f32", "bfloat16": "bf16"}

Row = dict[str, Any]
Reply = tuple[list[Row], list[str]]  # (result rows, notes on what was skipped and why)


class Unavailable(Exception):
    """An optional implementation cannot run here (not installed, wrong device or dtype)."""


class Case(NamedTuple):
    """One benchmarked shape: inputs ``[batch, time, input]``, hidden size, dtype."""

    batch: int
    time: int
    input: int
    hidden: int
    dtype: str = "float32"

    @property
    def label(self) -> str:
        """``"32, 128, 128, 128, f32"``: B, T, I, H and the dtype."""
        return f"{self.batch}, {self.time}, {self.input}, {self.hidden}, {SHORT_DTYPE[self.dtype]}"

    @classmethod
    def parse(cls, text: str, dtype: str = "float32") -> Case:
        """``Case.parse("64,256,256,256")``; raises ValueError naming the expected form."""
        try:
            batch, steps, input_size, hidden = (int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"a shape is B,T,I,H (four integers); got {text!r}") from None
        return cls(batch, steps, input_size, hidden, dtype)


DEFAULT_GRID = (
    Case(32, 128, 128, 128),
    Case(64, 256, 256, 256),
    Case(16, 1000, 32, 64),
    Case(128, 64, 512, 512),
    Case(8, 8192, 128, 128),  # long sequence: per-step overhead dominates
    Case(32, 128, 128, 128, "bfloat16"),
)
QUICK_GRID = (Case(8, 32, 16, 16),)


def flop(case: Case, kind: str, mode: str) -> int:
    """Matmul FLOPs: forward ``2·B·T·(I+H)·gates·H``; forward+backward three times that.

    The min kinds have no recurrent kernel, only the input projection: ``2·B·T·I·gates·H``.
    """
    width = case.input if kind in RNNJAX_ONLY_KINDS else case.input + case.hidden
    forward = 2 * case.batch * case.time * width * GATES[kind] * case.hidden
    return forward * (1 if mode == "forward" else 3)


def family(impl: str) -> str:
    """``"rnnjax"`` for ``"rnnjax-sequential"`` and ``"rnnjax-floor"``."""
    return impl.split("-", 1)[0]


def time_call(call: Callable[[], object]) -> float:
    """Seconds one call takes; ``call`` must block until its result is ready."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def round_robin(
    calls: Sequence[Callable[[], object]], warmup: int, repeats: int
) -> list[list[float]]:
    """Samples (seconds) per call, taken in turns so drift on a shared machine hits all alike."""
    for _ in range(warmup):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, taken in zip(calls, samples, strict=True):
            taken.append(time_call(call))
    return samples


def make_row(
    case: Case,
    mode: str,
    impl: str,
    name: str,
    kind: str,
    device: str,
    first_call_s: float,
    samples_s: list[float],
    peak_bytes: int | None,
) -> Row:
    """One result row: the medians and rates derived from ``samples_s``, and every sample."""
    median = statistics.median(samples_s)
    return {
        "case": case._asdict(),
        "mode": mode,
        "impl": impl,
        "name": name,
        "kind": kind,
        "device": device,
        "first_call_s": first_call_s,
        "median_ms": 1e3 * median,
        "tokens_per_s": case.batch * case.time / median,
        "gflop_per_s": flop(case, kind, mode) / median / 1e9,
        "peak_bytes": peak_bytes,
        "samples_s": samples_s,
    }


def skip_note(name: str, error: BaseException) -> str:
    """``"keras LSTM: skipped (ValueError: ...)"``, first line of the message only."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{name}: skipped ({type(error).__name__}: {message[:200]})"


def host() -> dict[str, Any]:
    """The host, its load, and the environment variables that change how the libraries run."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    variables = ("XLA_FLAGS", "JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE", "OMP_NUM_THREADS")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu or platform.machine(),
        "cpu_count": os.cpu_count(),
        "env": {name: os.environ[name] for name in variables if name in os.environ},
        "load_average": load_average(),
    }


def load_average() -> list[float] | None:
    """The host's 1, 5 and 15-minute load averages, where the OS reports them."""
    return [round(load, 2) for load in os.getloadavg()] if hasattr(os, "getloadavg") else None


def serve(setup: Callable[[dict], dict], bench: Callable[[dict], Reply]) -> None:
    """A worker's main loop: JSON config on argv, then one JSON request per stdin line.

    Answers ``setup(config)`` first (``{"available": true, ...}``, or ``{"available": false,
    "note": ...}`` when it raises), then ``{"rows": ..., "notes": ...}`` for each request.
    Anything else the libraries print goes to stderr, so stdout carries only the replies.
    """
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    try:
        hello = {"available": True, **setup(json.loads(sys.argv[1]))}
    except Exception as error:  # ImportError, Unavailable, or a broken install: all skip
        reply({"available": False, "note": skip_note("worker", error)})
        return
    reply(hello)
    for line in sys.stdin:
        try:
            rows, notes = bench(json.loads(line))
        except Exception as error:
            traceback.print_exc()
            rows, notes = [], [skip_note("this case", error)]
        reply({"rows": rows, "notes": notes})


class Worker:
    """The orchestrator's handle on one worker process, kept for the whole run."""

    def __init__(self, name: str, script: Path, config: dict, env: dict[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, str(script), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.hello = self._receive() or {"available": False, "note": "exited before answering"}

    @property
    def available(self) -> bool:
        return bool(self.hello.get("available"))

    def _receive(self) -> dict | None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def bench(self, request: dict) -> Reply:
        """Rows and notes for one case; a worker that died is reported and then left out."""
        if not self.available:
            return [], []
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            reply = self._receive()
        except BrokenPipeError:
            reply = None
        if reply is None:
            note = f"{self.name}: worker exited (code {self.process.poll()}); left out from here"
            self.hello = {"available": False, "note": note}
            return [], [note]
        return reply["rows"], reply["notes"]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
