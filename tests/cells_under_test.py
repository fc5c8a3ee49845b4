"""The cells every test runs over, each with its float64 reference step."""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from tests import reference


class Case(NamedTuple):
    name: str
    cell: rnnjax.Cell
    reference_step: Any
    carry_arrays: int  # 2 for the LSTM's (h, c), else 1
    gates: int
    width: int = 5  # of each carry array (the LRU's holds real and imaginary parts)


HIDDEN = 5

CASES = [
    Case("simple_rnn-tanh", rnnjax.simple_rnn(HIDDEN), reference.simple_rnn_step, 1, 1),
    Case(
        "simple_rnn-relu",
        rnnjax.simple_rnn(HIDDEN, jax.nn.relu),
        functools.partial(reference.simple_rnn_step, activation=lambda x: np.maximum(x, 0)),
        1,
        1,
    ),
    Case("lstm", rnnjax.lstm(HIDDEN), reference.lstm_step, 2, 4),
    Case(
        "gru-reset_after",
        rnnjax.gru(HIDDEN),
        functools.partial(reference.gru_step, reset_after=True),
        1,
        3,
    ),
    Case(
        "gru-reset_before",
        rnnjax.gru(HIDDEN, reset_after=False),
        functools.partial(reference.gru_step, reset_after=False),
        1,
        3,
    ),
    Case("min_gru", rnnjax.min_gru(HIDDEN), reference.min_gru_step, 1, 2),
    Case("min_lstm", rnnjax.min_lstm(HIDDEN), reference.min_lstm_step, 1, 3),
    Case("lstm-peephole", rnnjax.lstm(HIDDEN, peephole=True), reference.peephole_lstm_step, 2, 4),
    Case("layer_norm_lstm", rnnjax.layer_norm_lstm(HIDDEN), reference.layer_norm_lstm_step, 2, 4),
    Case("indrnn", rnnjax.indrnn(HIDDEN), reference.indrnn_step, 1, 1),
    Case("para_gru", rnnjax.para_gru(HIDDEN), reference.para_gru_step, 1, 3),
    Case("para_lstm", rnnjax.para_lstm(HIDDEN), reference.para_lstm_step, 2, 3),
    Case("rg_lru", rnnjax.rg_lru(HIDDEN), reference.rg_lru_step, 1, 3),
    Case("lru", rnnjax.lru(HIDDEN), reference.lru_step, 1, 0, width=2 * HIDDEN),
]
CASE_IDS = [case.name for case in CASES]


def random_params(case, key, input_size, dtype=jnp.float32):
    """The cell's params with every entry random (biases too), so no term can hide."""
    params = case.cell.init(key, input_size, dtype)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    leaves = [
        jax.random.uniform(k, x.shape, x.dtype, -0.6, 0.6)
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, leaves)


def random_carry(case, key, batch_shape, dtype=jnp.float32):
    arrays = [
        jax.random.normal(k, (*batch_shape, case.width), dtype)
        for k in jax.random.split(key, case.carry_arrays)
    ]
    return rnnjax.LSTMState(*arrays) if case.carry_arrays == 2 else arrays[0]


def carry_arrays(carry):
    """The carry as a tuple of arrays, the reference's state layout."""
    return tuple(carry) if isinstance(carry, rnnjax.LSTMState) else (carry,)


def to_float64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def reference_step(case, params, carry, x):
    """``case``'s float64 reference step; returns the new state as a tuple of arrays."""
    state = to_float64(carry_arrays(carry))
    out = case.reference_step(
        to_float64(params._asdict()), state if len(state) > 1 else state[0], to_float64(x)
    )
    return out if isinstance(out, tuple) else (out,)


def reference_run(case, params, xs, carry, lengths=None, reverse=False):
    """``case``'s float64 per-example reference loop; ``(final state tuple, ys)``."""
    return reference.run(
        case.reference_step,
        params._asdict(),
        xs,
        to_float64(carry_arrays(carry)),
        None if lengths is None else np.asarray(lengths),
        reverse,
    )


CASES_BY_NAME = {case.name: case for case in CASES}


def case_named(name):
    """The case called ``name`` (tests pick cases by name, never by their place in CASES)."""
    return CASES_BY_NAME[name]
