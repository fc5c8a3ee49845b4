"""rnnjax's speed settings against each other: ``unroll``, ``remat``, ``hoist_projection``,
``parallel`` and truncated BPTT, on one cell and shape at a time.

Every variant is one ``jax.jit`` of the gradient of ``mean(ys)`` (``--forward``: of ``ys``
alone), compiled first, then called round-robin with the others (``--repeats`` rounds after a
warm-up), so that drift on a shared machine hits all of them alike. Prints a Markdown table:
the median milliseconds, each variant's time over the default call's (below 1: faster) and
the compiled program's temporary memory (XLA's ``memory_analysis``).

    python benchmarks/settings.py --kind lstm --shape 16,1000,32,64
    python benchmarks/settings.py --kind min_gru --shape 8,4096,64,64 --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import rnnjax

Outputs = Callable[[rnnjax.Cell, Any, jax.Array], jax.Array]
SEQUENTIAL: dict[str, Outputs] = {
    "default": lambda cell, p, xs: rnnjax.rnn(cell, p, xs)[1],
    "unroll=4": lambda cell, p, xs: rnnjax.rnn(cell, p, xs, unroll=4)[1],
    "unroll=16": lambda cell, p, xs: rnnjax.rnn(cell, p, xs, unroll=16)[1],
    "hoist_projection=True": lambda cell, p, xs: rnnjax.rnn(cell, p, xs, hoist_projection=True)[1],
    "remat=True": lambda cell, p, xs: rnnjax.rnn(cell, p, xs, remat=True)[1],
    "layer remat='segments'": lambda cell, p, xs: rnnjax.layer(cell, remat="segments").apply(p, xs)[
        1
    ],
    "tbptt chunk_length=100": lambda cell, p, xs: rnnjax.tbptt(
        rnnjax.layer(cell), p, xs, chunk_length=100
    )[1],
}
LINEAR: dict[str, Outputs] = {
    "default": lambda cell, p, xs: rnnjax.rnn(cell, p, xs)[1],
    "parallel=False": lambda cell, p, xs: rnnjax.rnn(cell, p, xs, parallel=False)[1],
    "parallel=False, unroll=8": lambda cell, p, xs: rnnjax.rnn(
        cell, p, xs, parallel=False, unroll=8
    )[1],
    "remat=True": lambda cell, p, xs: rnnjax.rnn(cell, p, xs, remat=True)[1],
}


def compiled(cell: rnnjax.Cell, outputs: Outputs, forward: bool, params: Any, xs: Any) -> Any:
    """``outputs``, or the gradient of their mean, compiled for ``params`` and ``xs``."""

    def loss(params: Any, xs: jax.Array) -> jax.Array:
        return jnp.mean(outputs(cell, params, xs))

    function = (lambda p, x: outputs(cell, p, x)) if forward else jax.grad(loss)
    return jax.jit(function).lower(params, xs).compile()


def measure(
    kind: str, shape: tuple[int, ...], forward: bool, repeats: int
) -> dict[str, tuple[float, int]]:
    """Per variant, the median seconds (interleaved round-robin after a warm-up) and the
    compiled temporary memory in bytes."""
    batch, time_steps, inputs, hidden = shape
    cell = getattr(rnnjax, kind)(hidden)
    params = cell.init(jax.random.key(0), inputs)
    xs = jax.random.normal(jax.random.key(1), (batch, time_steps, inputs))
    table = LINEAR if cell.linear_scan is not None else SEQUENTIAL
    calls = {name: compiled(cell, outputs, forward, params, xs) for name, outputs in table.items()}
    for call in calls.values():  # warm up
        jax.block_until_ready(call(params, xs))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call(params, xs))
            samples[name].append(time.perf_counter() - start)
    return {
        name: (statistics.median(samples[name]), call.memory_analysis().temp_size_in_bytes)
        for name, call in calls.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="lstm", help="a cell factory of rnnjax, e.g. gru")
    parser.add_argument("--shape", default="16,1000,32,64", help="B,T,I,H")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--forward", action="store_true", help="time the forward pass alone")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))
    medians = measure(args.kind, shape, args.forward, args.repeats)
    mode = "forward" if args.forward else "forward+backward"
    print(f"{args.kind}, B, T, I, H = {shape}, {mode}, {jax.devices()[0].device_kind}")
    print("\n| setting | median ms | time / default | temporary memory MiB |\n|---|---:|---:|---:|")
    default = medians["default"][0]
    for name, (seconds, memory) in medians.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / default:.2f} | {memory / 2**20:.1f} |")


if __name__ == "__main__":
    main()
