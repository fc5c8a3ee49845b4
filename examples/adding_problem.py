"""The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015), every cell on the same
step budget.

Each input step is a pair: a number drawn from ``U(0, 1)`` and a marker, 1 at two random
steps (one in each half of the sequence) and 0 elsewhere; the target is the sum of the two
marked numbers. Predicting the constant 1 scores a mean squared error of about 0.167, so a
test MSE well below that means the cell carried the marked numbers across the sequence. The
model is one recurrent layer and a linear readout of its last output, trained with Adam on
fresh batches; the test set is fixed. The script prints and writes (JSON) the test MSE and
the training wall time per cell.

    python examples/adding_problem.py --cells lstm,min_gru,para_gru,indrnn,lru,rg_lru
    python examples/adding_problem.py --quick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

import rnnjax

CELLS = {
    "lstm": rnnjax.lstm,
    "gru": rnnjax.gru,
    "min_gru": rnnjax.min_gru,
    "indrnn": rnnjax.indrnn,
    "para_gru": rnnjax.para_gru,
    "para_lstm": rnnjax.para_lstm,
    "rg_lru": rnnjax.rg_lru,
    "lru": lambda hidden: rnnjax.lru(hidden // 2, r_min=0.9, r_max=0.999, max_phase=0.314),
}


def batch(key: jax.Array, size: int, length: int) -> tuple[jax.Array, jax.Array]:
    """``(xs [size, length, 2], targets [size])``: numbers and markers, and the marked sum."""
    k_numbers, k_first, k_second = jax.random.split(key, 3)
    numbers = jax.random.uniform(k_numbers, (size, length))
    half = length // 2
    first = jax.random.randint(k_first, (size,), 0, half)
    second = jax.random.randint(k_second, (size,), half, length)
    steps = jnp.arange(length)
    markers = (steps == first[:, None]) | (steps == second[:, None])
    xs = jnp.stack([numbers, markers.astype(numbers.dtype)], axis=-1)
    return xs, jnp.sum(numbers * markers, axis=1)


def train(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Trains one cell for ``args.steps`` steps; its test MSE and wall time."""
    cell = CELLS[name](args.hidden)
    layer = rnnjax.layer(cell)
    k_init, k_dense, k_test, k_train = jax.random.split(jax.random.key(args.seed), 4)
    params = {
        "rnn": layer.init(k_init, 2),
        "dense": jax.random.normal(k_dense, (args.hidden,)) / args.hidden**0.5,
        "bias": jnp.ones(()),
    }

    def predict(params: Any, xs: jax.Array) -> jax.Array:
        _, ys = layer.apply(params["rnn"], xs)
        return ys[:, -1] @ params["dense"] + params["bias"]

    def loss_fn(params: Any, xs: jax.Array, targets: jax.Array) -> jax.Array:
        return jnp.mean((predict(params, xs) - targets) ** 2)

    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(args.learning_rate))
    state = optimizer.init(params)

    @jax.jit
    def update(params: Any, state: Any, key: jax.Array) -> tuple[Any, Any, jax.Array]:
        xs, targets = batch(key, args.batch_size, args.length)
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, targets)
        changes, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, changes), state, loss

    keys = jax.random.split(k_train, args.steps)
    params, state, _ = jax.block_until_ready(update(params, state, keys[0]))  # compile
    start = time.perf_counter()
    for key in keys[1:]:
        params, state, _ = update(params, state, key)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    test_xs, test_targets = batch(k_test, 1000, args.length)
    mse = float(jax.jit(loss_fn)(params, test_xs, test_targets))
    return {"cell": name, "test_mse": mse, "train_seconds": seconds, "steps": args.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="lstm,min_gru,para_gru,indrnn,lru,rg_lru")
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/adding_problem.json")
    parser.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    args = parser.parse_args()
    names = args.cells.split(",")
    unknown = sorted(set(names) - set(CELLS))
    if unknown:
        parser.error(f"--cells: unknown {unknown}; choose from {sorted(CELLS)}")
    if args.quick:
        args.length, args.hidden, args.steps, args.batch_size = 20, 8, 3, 8
    results = []
    for name in names:
        result = train(name, args)
        print(f"{name:10s} test MSE {result['test_mse']:.4f}  {result['train_seconds']:.1f} s")
        results.append(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
