"""Times rnnjax against Flax's ``nn.RNN`` on the same shapes, in one process, side by side.

Forward and forward+backward (value and grad of a mean loss w.r.t. params and inputs) are
timed apart; the first call (compile) is reported apart; every call ends in
``block_until_ready``; implementations run interleaved round-robin after a warm-up, and the
table gives medians with ratios to rnnjax (above 1: rnnjax is faster).

    python benchmarks/run.py                 # the default grid
    python benchmarks/run.py --quick         # a tiny grid, seconds
    python benchmarks/run.py --shape 64,256,256,256 --repeats 15
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

import rnnjax

GRID = [(32, 128, 128, 128), (64, 256, 256, 256), (16, 1000, 32, 64), (128, 64, 512, 512)]
QUICK_GRID = [(8, 16, 8, 8)]
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}


class Candidate(NamedTuple):
    name: str
    kind: str  # lstm | gru | simple_rnn
    apply: Callable[[Any, jax.Array], jax.Array]  # (params, xs [B, T, I]) -> ys [B, T, H]
    params: Any


def rnnjax_candidate(kind: str, key: jax.Array, input_size: int, hidden: int) -> Candidate:
    cell = {"lstm": rnnjax.lstm, "gru": rnnjax.gru, "simple_rnn": rnnjax.simple_rnn}[kind](hidden)
    params = cell.init(key, input_size)
    return Candidate(f"rnnjax {kind}", kind, lambda p, xs: rnnjax.rnn(cell, p, xs)[1], params)


def flax_candidate(
    cell_type: type[nn.Module], kind: str, key: jax.Array, xs: jax.Array, hidden: int
) -> Candidate:
    module = nn.RNN(cell_type(hidden))
    return Candidate(f"flax {cell_type.__name__}", kind, module.apply, module.init(key, xs))


def candidates(key: jax.Array, xs: jax.Array, hidden: int, kinds: list[str]) -> list[Candidate]:
    input_size = xs.shape[-1]
    found = []
    for kind in kinds:
        found.append(rnnjax_candidate(kind, key, input_size, hidden))
        if kind == "lstm":
            found.append(flax_candidate(nn.OptimizedLSTMCell, kind, key, xs, hidden))
            found.append(flax_candidate(nn.LSTMCell, kind, key, xs, hidden))
        elif kind == "gru":
            found.append(flax_candidate(nn.GRUCell, kind, key, xs, hidden))
        elif kind == "simple_rnn":
            found.append(flax_candidate(nn.SimpleCell, kind, key, xs, hidden))
    return found


def compiled(candidate: Candidate, mode: str) -> Callable[[Any, jax.Array], Any]:
    if mode == "forward":
        return jax.jit(candidate.apply)
    loss = lambda params, xs: jnp.mean(candidate.apply(params, xs))  # noqa: E731
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(function())
    return time.perf_counter() - start


def bench_shape(
    shape: tuple[int, int, int, int], kinds: list[str], repeats: int, warmup: int
) -> list[dict[str, Any]]:
    batch, steps, input_size, hidden = shape
    key = jax.random.key(0)
    xs = jax.random.normal(key, (batch, steps, input_size))
    rows = []
    for mode in ("forward", "forward+backward"):
        runs = []
        for candidate in candidates(key, xs, hidden, kinds):
            function = compiled(candidate, mode)
            first = timed(lambda f=function, c=candidate: f(c.params, xs))
            runs.append((candidate, function, first, []))
        for _ in range(warmup):
            for candidate, function, _, _ in runs:
                timed(lambda f=function, c=candidate: f(c.params, xs))
        for _ in range(repeats):  # round-robin, so drift on a shared machine hits everyone
            for candidate, function, _, samples in runs:
                samples.append(timed(lambda f=function, c=candidate: f(c.params, xs)))
        for candidate, _, first, samples in runs:
            flop = 2 * batch * steps * (input_size + hidden) * GATES[candidate.kind] * hidden
            median = statistics.median(samples)
            rows.append(
                {
                    "shape": dict(batch=batch, time=steps, input=input_size, hidden=hidden),
                    "mode": mode,
                    "name": candidate.name,
                    "kind": candidate.kind,
                    "first_call_s": first,
                    "median_ms": 1e3 * median,
                    "tokens_per_s": batch * steps / median,
                    "gflop_per_s": flop * (1 if mode == "forward" else 3) / median / 1e9,
                    "samples_s": samples,
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| B, T, I, H | mode | implementation | median ms | tokens/s | GFLOP/s | vs rnnjax |"
        " compile s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        reference = next(
            r
            for r in rows
            if r["shape"] == row["shape"]
            and r["mode"] == row["mode"]
            and r["name"] == f"rnnjax {row['kind']}"
        )
        shape = ", ".join(str(v) for v in row["shape"].values())
        lines.append(
            f"| {shape} | {row['mode']} | {row['name']} | {row['median_ms']:.1f} |"
            f" {row['tokens_per_s']:,.0f} | {row['gflop_per_s']:.0f} |"
            f" {row['median_ms'] / reference['median_ms']:.2f}x | {row['first_call_s']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny grid that runs in seconds")
    parser.add_argument("--shape", action="append", help="B,T,I,H (repeatable)")
    parser.add_argument("--kinds", default="lstm,gru,simple_rnn", help="comma-separated cells")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results", help="folder for JSON and table")
    args = parser.parse_args()

    if args.shape:
        grid = [tuple(int(v) for v in s.split(",")) for s in args.shape]
    else:
        grid = QUICK_GRID if args.quick else GRID
    kinds = args.kinds.split(",")
    environment = {
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "rnnjax": rnnjax.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(environment), flush=True)
    rows = []
    for shape in grid:
        rows += bench_shape(shape, kinds, args.repeats, args.warmup)  # type: ignore[arg-type]
        print(markdown([r for r in rows if tuple(r["shape"].values()) == shape]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"environment": environment, "rows": rows}))
    (out / "table.md").write_text(markdown(rows) + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'table.md'}")


if __name__ == "__main__":
    main()
