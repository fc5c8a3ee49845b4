"""Newton's method over the whole sequence against the sequential scan, with iteration counts.

For each shape (B, T, I, H) and cell: the sequential scan (``rnnjax.rnn(parallel=False)``)
and Newton (``rnnjax.newton_rnn``: exact for the diagonal cells, ``quasi=True`` for the dense
GRU), forward and forward+backward, compile time apart, median of ``--repeats`` after a
warm-up; then the parts of one Newton iteration timed alone (one evaluation of the cell at
every step at once, with its Jacobian, and one linear recurrence), which say why Newton costs
what it costs on this device.

    python benchmarks/newton.py                     # the three shapes of issue 27 (minutes)
    python benchmarks/newton.py --shape 1,4096,32,32 --cells para_gru --repeats 3

The diagonal cells are ``rnnjax.indrnn`` / ``rnnjax.para_gru`` where rnnjax has them, else
stand-ins defined here (same equations, Jacobian from one tangent of ones).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import rnnjax
from rnnjax._src.core.contract import DiagonalJacobian
from rnnjax._src.linear.recurrence import default_method
from rnnjax._src.newton.blocks import solve
from rnnjax._src.newton.solver import evaluate, shift, stack

SHAPES = ((16, 4096, 128, 128), (1, 65536, 32, 32), (64, 256, 256, 256))
CELLS = ("indrnn", "para_gru", "gru")


def _stand_in(kind: str, hidden: int) -> rnnjax.Cell:
    """IndRNN ``h' = tanh(x W + u * h + b)`` or ParaGRU (a GRU with per-unit recurrent vectors)."""
    names = ("",) if kind == "indrnn" else ("z", "r", "n")

    def init(key: jax.Array, input_size: int, dtype: Any = jnp.float32) -> dict:
        keys = jax.random.split(key, 2 * len(names))
        params = {}
        for i, name in enumerate(names):
            scale = 1 / jnp.sqrt(input_size)
            params["w" + name] = scale * jax.random.normal(keys[2 * i], (input_size, hidden), dtype)
            params["u" + name] = jax.random.uniform(keys[2 * i + 1], (hidden,), dtype, -1, 1)
            params["b" + name] = jnp.zeros((hidden,), dtype)
        return params

    def pre(params: dict, name: str, x: jax.Array, h: jax.Array) -> jax.Array:
        return x @ params["w" + name] + params["u" + name] * h + params["b" + name]

    def step(params: dict, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if kind == "indrnn":
            h = jnp.tanh(pre(params, "", x, h))
            return h, h
        z, r = jax.nn.sigmoid(pre(params, "z", x, h)), jax.nn.sigmoid(pre(params, "r", x, h))
        n = jnp.tanh(x @ params["wn"] + r * (params["un"] * h) + params["bn"])
        h = (1 - z) * n + z * h
        return h, h

    def with_jacobian(params: dict, h: jax.Array, x: jax.Array) -> Any:
        out, d_h = jax.jvp(lambda h: step(params, h, x)[0], (h,), (jnp.ones_like(h),))
        return (out, out), d_h[..., None, None]

    def initial_carry(params: dict, batch_shape: Any, dtype: Any = None) -> jax.Array:
        shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
        return jnp.zeros((*shape, hidden), dtype or params["b" + names[0]].dtype)

    return rnnjax.Cell(
        init,
        initial_carry,
        step,
        input_size=lambda params: params["w" + names[0]].shape[0],
        output=lambda h: h,
        diagonal_jacobian=DiagonalJacobian(with_jacobian),
    )


def make_cell(kind: str, hidden: int) -> rnnjax.Cell:
    if kind == "gru":
        return rnnjax.gru(hidden)
    built_in = getattr(rnnjax, kind, None)
    return built_in(hidden) if built_in is not None else _stand_in(kind, hidden)


def _median_seconds(function: Any, *args: Any, repeats: int) -> tuple[float, float]:
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    first = time.perf_counter() - start
    jax.block_until_ready(function(*args))  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        samples.append(time.perf_counter() - start)
    return first, statistics.median(samples)


def _runs(cell: rnnjax.Cell, quasi: bool) -> dict[str, Any]:
    def sequential(params: Any, xs: jax.Array) -> jax.Array:
        return rnnjax.rnn(cell, params, xs, parallel=False)[1]

    def newton(params: Any, xs: jax.Array) -> jax.Array:
        return rnnjax.newton_rnn(cell, params, xs, quasi=quasi)[1]

    def with_backward(apply: Any) -> Any:
        return jax.value_and_grad(lambda p, x: jnp.mean(apply(p, x)), argnums=(0, 1))

    return {
        ("sequential", "forward"): jax.jit(sequential),
        ("newton", "forward"): jax.jit(newton),
        ("sequential", "forward+backward"): jax.jit(with_backward(sequential)),
        ("newton", "forward+backward"): jax.jit(with_backward(newton)),
    }


def _parts(cell: rnnjax.Cell, params: Any, xs: jax.Array, quasi: bool, repeats: int) -> dict:
    """One Newton iteration's two parts, timed alone at the zero trajectory."""
    inputs = jnp.moveaxis(xs, 1, 0)
    carry = cell.initial_carry(params, xs.shape[:1])
    treedef, initial = jax.tree.structure(carry), stack(carry)
    states = jnp.broadcast_to(initial, inputs.shape[:1] + initial.shape)
    kind = "quasi" if quasi else "exact"

    @jax.jit
    def linearise(params: Any, states: jax.Array) -> Any:
        prev = shift(states, initial)
        return evaluate(cell, kind, treedef, params, prev, inputs, None, None, initial)

    new, _, jac = linearise(params, states)
    recurrence = jax.jit(functools.partial(solve, method=default_method()))
    return {
        "evaluate_s": _median_seconds(linearise, params, states, repeats=repeats)[1],
        "linear_recurrence_s": _median_seconds(recurrence, jac, new, initial, repeats=repeats)[1],
    }


def bench(shape: tuple[int, ...], kind: str, repeats: int) -> dict[str, Any]:
    batch, time_steps, inputs, hidden = shape
    cell = make_cell(kind, hidden)
    quasi = cell.diagonal_jacobian is None
    params = cell.init(jax.random.key(0), inputs)
    xs = jax.random.normal(jax.random.key(1), (batch, time_steps, inputs))
    info = jax.jit(lambda p, x: rnnjax.newton_rnn(cell, p, x, quasi=quasi)[2])(params, xs)
    row: dict[str, Any] = {
        "shape": shape,
        "cell": kind + (" (quasi)" if quasi else ""),
        "iterations": int(info.iterations),
        "residual": float(info.residual),
        "converged": bool(info.converged),
    }
    for (path, mode), function in _runs(cell, quasi).items():
        first, median = _median_seconds(function, params, xs, repeats=repeats)
        row[f"{path} {mode} s"] = median
        row[f"{path} {mode} compile s"] = first - median
    row.update(_parts(cell, params, xs, quasi, repeats))
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| B, T, I, H | cell | iters | residual | fwd seq ms | fwd newton ms | ratio"
        " | fwd+bwd seq ms | fwd+bwd newton ms | ratio | eval ms | lin. rec. ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fwd = r["newton forward s"] / r["sequential forward s"]
        both = r["newton forward+backward s"] / r["sequential forward+backward s"]
        lines.append(
            f"| {', '.join(map(str, r['shape']))} | {r['cell']} | {r['iterations']}"
            f"{'' if r['converged'] else ' (fallback)'} | {r['residual']:.1e}"
            f" | {1e3 * r['sequential forward s']:.0f} | {1e3 * r['newton forward s']:.0f}"
            f" | {fwd:.1f}x | {1e3 * r['sequential forward+backward s']:.0f}"
            f" | {1e3 * r['newton forward+backward s']:.0f} | {both:.1f}x"
            f" | {1e3 * r['evaluate_s']:.0f} | {1e3 * r['linear_recurrence_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", action="append", metavar="B,T,I,H")
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    shapes = [tuple(map(int, s.split(","))) for s in args.shape] if args.shape else SHAPES
    rows = []
    for shape in shapes:
        for kind in args.cells.split(","):
            rows.append(bench(shape, kind, args.repeats))
            print(rows[-1], flush=True)
    print(f"\n{jax.devices()[0].device_kind}, {jax.default_backend()}\n")
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
