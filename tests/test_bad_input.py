"""Bad input is never silent and never cryptic: ``rnn``, ``cell.step``, ``layer``, the NNX and
linen modules.

A seeded generator makes malformed calls (one bad argument among valid ones, eagerly and
under ``jax.jit``) to each entry point; every one must raise a ``TypeError``/``ValueError``
whose message names the entry point and the argument. Valid edge inputs (zero batch, zero
steps, float16 and bfloat16, NaN in the padding) must give what a reference call gives. The
issue's reproductions are pinned below the generator.
"""

from __future__ import annotations

import collections
import functools
import random
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnjax
import rnnjax.linen
import rnnjax.nnx

BATCH, TIME, FEATURES, HIDDEN = 2, 5, 3, 4
CELLS = {"lstm": rnnjax.lstm(HIDDEN), "gru": rnnjax.gru(HIDDEN)}
PARAMS = {name: cell.init(jax.random.key(0), FEATURES) for name, cell in CELLS.items()}
XS = jax.random.normal(jax.random.key(1), (BATCH, TIME, FEATURES))
# Params of another cell's type whose first fields match (issue 32: once silently accepted).
LOOKALIKES = (rnnjax.layer_norm_lstm(HIDDEN), rnnjax.lstm(HIDDEN, peephole=True))
FOREIGN_PARAMS = {"lstm": [c.init(jax.random.key(0), FEATURES) for c in LOOKALIKES]}
FOREIGN_PARAMS["gru"] = [PARAMS["lstm"]]
COUNTS: collections.Counter[tuple[str, str]] = collections.Counter()

# Values that are wrong for a bool, an int option, a rate, and arrays of the wrong kind.
NOT_BOOL = ["no", "False", 1, 0, None, 2.0, jnp.array(True), [True]]
NOT_UNROLL = [None, "2", 1.5, 0, -1, jnp.array(2), (1,)]
NOT_RATE = [1.0, -0.1, 3.0, "0.1", None, True, jnp.array(0.1)]


def as_dtype(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda a: a.astype(dtype), tree)


def wrong_arrays(shape: tuple[int, ...]) -> list[Any]:
    """Arrays that must be refused where a float array of ``shape`` is expected."""
    return [
        jnp.zeros(shape, jnp.int32),
        jnp.zeros(shape, bool),
        jnp.zeros(shape, jnp.uint8),
        jnp.zeros(shape, jnp.complex64),
        np.zeros(shape, np.int64),
        None,
        "xs",
        jnp.zeros((*shape[:-1], shape[-1] + 1)),
        jnp.zeros(shape[-1:]),  # rank 1: no time axis
    ]


def malformed_rnn(rng: random.Random) -> tuple[str, Callable[[], Any]]:
    """One call of ``rnnjax.rnn`` with one bad argument: ``(argument, call)``."""
    name = rng.choice(sorted(CELLS))
    cell, params = CELLS[name], PARAMS[name]
    carry = cell.initial_carry(params, BATCH)
    bad_carry = [
        as_dtype(carry, jnp.int32),
        as_dtype(carry, bool),
        as_dtype(carry, jnp.complex64),
        jax.tree.map(lambda a: a[:1], carry),
        tuple(jax.tree.leaves(carry)) * (2 if name == "gru" else 1),
    ]
    options = {
        "cell": [rnnjax.lstm, None, "lstm", rnnjax.layer(cell), 3, {"init": None}],
        "params": [
            as_dtype(params, jnp.int32),
            as_dtype(params, bool),
            as_dtype(params, jnp.complex64),
            PARAMS["gru" if name == "lstm" else "lstm"],
            *FOREIGN_PARAMS[name],
            None,
        ],
        "xs": wrong_arrays(XS.shape),
        "initial_carry": bad_carry,
        "seq_lengths": [
            jnp.array([1.0, 2.0]),
            jnp.array([1, 2, 3]),
            [1, 2],
            jnp.array([-3, 2]),
            jnp.array([9, 2]),
            jnp.array([True, False]),
        ],
        "resets": [jnp.zeros((BATCH, TIME)), jnp.zeros((BATCH, TIME + 1), bool), "no"],
        "reverse": NOT_BOOL,
        "time_major": NOT_BOOL,
        "unroll": NOT_UNROLL,
        "remat": ["no", "segments", 2, None],
        "hoist_projection": ["yes", 2, jnp.array(True)],
        "parallel": ["no", 2, 1.0],
    }
    argument = rng.choice(sorted(options))
    value = rng.choice(options[argument])
    kwargs: dict[str, Any] = {"cell": cell, "params": params, "xs": XS, argument: value}
    traceable = hasattr(kwargs["params"], "dtype") or argument != "xs" or hasattr(value, "shape")
    jitted = argument not in ("cell", "seq_lengths") and traceable and rng.random() < 0.5

    def call() -> Any:
        run = functools.partial(rnnjax.rnn, kwargs.pop("cell"))
        arrays = {k: kwargs.pop(k) for k in ("params", "xs")}
        if jitted:
            return jax.jit(lambda p, x: run(p, x, **kwargs))(arrays["params"], arrays["xs"])
        return run(arrays["params"], arrays["xs"], **kwargs)

    return argument, call


def malformed_step(rng: random.Random) -> tuple[str, Callable[[], Any]]:
    """One call of ``cell.step(params, carry, x)`` with one bad argument."""
    name = rng.choice(sorted(CELLS))
    cell, params = CELLS[name], PARAMS[name]
    carry = cell.initial_carry(params, BATCH)
    options = {
        "params": [
            as_dtype(params, jnp.int32),
            as_dtype(params, bool),
            PARAMS["gru" if name == "lstm" else "lstm"],
            *FOREIGN_PARAMS[name],
        ],
        "x": wrong_arrays(XS[:, 0].shape),
        "carry": [
            as_dtype(carry, jnp.int32),
            as_dtype(carry, jnp.complex64),
            jax.tree.map(lambda a: a[:1], carry),
            tuple(jax.tree.leaves(carry)),
        ],
    }
    argument = rng.choice(sorted(options))
    args = {
        "params": params,
        "carry": carry,
        "x": XS[:, 0],
        argument: rng.choice(options[argument]),
    }
    step = jax.jit(cell.step) if rng.random() < 0.5 and argument != "x" else cell.step
    return argument, lambda: step(args["params"], args["carry"], args["x"])


def malformed_layer(rng: random.Random) -> tuple[str, Callable[[], Any]]:
    """One construction of ``rnnjax.layer`` or call of its ``apply`` with one bad argument."""
    cell = CELLS[rng.choice(sorted(CELLS))]
    params = cell.init(jax.random.key(0), FEATURES)
    construction = {
        "cell": [rnnjax.gru, None, "gru"],
        "reverse": NOT_BOOL,
        "dropout": NOT_RATE,
        "recurrent_dropout": NOT_RATE,
        "unroll": NOT_UNROLL,
        "remat": ["no", "sqrt", 2],
        "segment_length": [0, 2.5, "4", True],
        "compute_dtype": ["float99", jnp.int32, "int8", 3],
        "hoist_projection": ["yes", 2],
        "parallel": ["no", 2],
    }
    remat = rng.choice([False, True, "segments"])
    call_options = {
        "xs": wrong_arrays(XS.shape),
        "seq_lengths": [jnp.array([-3, 9]), [1, 2], jnp.array([1.0, 2.0]), jnp.array([1])],
        "deterministic": NOT_BOOL,
        "initial_carry": [as_dtype(cell.initial_carry(params, BATCH), jnp.int32)],
        "input_size": [0, -1, 2.5, None, "3"],
    }
    argument = rng.choice(sorted(construction) + sorted(call_options))
    if argument in construction:
        value = rng.choice(construction[argument])
        if argument == "cell":
            return argument, lambda: rnnjax.layer(value)
        if argument == "segment_length":
            return argument, lambda: rnnjax.layer(cell, remat="segments", segment_length=value)
        return argument, lambda: rnnjax.layer(cell, **{argument: value})
    layer = rnnjax.layer(cell, remat=remat)
    value = rng.choice(call_options[argument])
    if argument == "input_size":
        return argument, lambda: layer.init(jax.random.key(0), value)
    kwargs = {"xs": XS, argument: value}
    return argument, lambda: layer.apply(params, kwargs.pop("xs"), **kwargs)


NNX_LSTM = rnnjax.nnx.LSTM(FEATURES, HIDDEN, dropout=0.1, rngs=nnx.Rngs(0))


def malformed_nnx(rng: random.Random) -> tuple[str, Callable[[], Any]]:
    """One construction or call of ``rnnjax.nnx.LSTM`` with one bad argument."""
    construction = {
        "in_features": [0, -1, 2.5, None, "3", True],
        "features": [0, 2.0, True, None],
        "return_sequences": NOT_BOOL,
        "return_state": NOT_BOOL,
        "go_backwards": NOT_BOOL,
        "dropout": NOT_RATE,
        "num_layers": [0, 1.5, True, "2"],
        "stack_dropout": NOT_RATE[:3],
        "unroll": NOT_UNROLL,
        "dtype": ["float99", jnp.int32],
        "param_dtype": [jnp.int32, "int8", bool],
        "initializer": ["he", 3, "Keras"],
        "rngs": [None, 0, jax.random.key(0)],
        "retrun_sequences": [True],
    }
    calls = {
        "xs": wrong_arrays(XS.shape),
        "seq_lengths": [jnp.array([-1, 2]), [1, 2], jnp.array([1.0, 2.0])],
        "deterministic": NOT_BOOL[:3],
    }
    argument = rng.choice(sorted(construction) + sorted(calls))
    if argument in calls:
        kwargs = {"xs": XS, argument: rng.choice(calls[argument])}
        return argument, lambda: NNX_LSTM(kwargs.pop("xs"), **kwargs)
    settings: dict[str, Any] = {"rngs": nnx.Rngs(0)}
    sizes = [FEATURES, HIDDEN]
    value = rng.choice(construction[argument])
    if argument in ("in_features", "features"):
        sizes[argument == "features"] = value
    else:
        settings[argument] = value
        if argument == "stack_dropout":
            settings["num_layers"] = 2
    return argument, lambda: rnnjax.nnx.LSTM(*sizes, **settings)


LINEN_LSTM = rnnjax.linen.LSTM(HIDDEN, dropout=0.1)
LINEN_VARIABLES = LINEN_LSTM.init(jax.random.key(0), XS, deterministic=True)


def malformed_linen(rng: random.Random) -> tuple[str, Callable[[], Any]]:
    """One ``rnnjax.linen.LSTM`` init or apply with one bad attribute or argument."""
    attributes = {
        "features": [0, 2.0, True, None],
        "return_sequences": NOT_BOOL,
        "go_backwards": NOT_BOOL,
        "recurrent_dropout": NOT_RATE,
        "num_layers": [0, 1.5, True],
        "remat": ["no", 3],
        "dtype": ["float99", jnp.int32],
        "param_dtype": [jnp.int32, bool],
    }
    calls = {
        "xs": wrong_arrays(XS.shape),
        "seq_lengths": [jnp.array([-1, 2]), [1, 2], jnp.array([1.0, 2.0])],
        "deterministic": ["False", 1],
    }
    argument = rng.choice(sorted(attributes) + sorted(calls))
    key = jax.random.key(0)
    if argument in attributes:
        value = rng.choice(attributes[argument])
        if argument == "features":
            return argument, lambda: rnnjax.linen.LSTM(value).init(key, XS)
        module = rnnjax.linen.LSTM(HIDDEN, **{argument: value})
        return argument, lambda: module.init(key, XS)
    kwargs = {"xs": XS, "deterministic": True, argument: rng.choice(calls[argument])}
    return argument, lambda: LINEN_LSTM.apply(LINEN_VARIABLES, kwargs.pop("xs"), **kwargs)


NOT_FLOAT = ["a", None, "pi", jnp.array(0.5), True, [0.5], np.array([0.5])]
LRU_SETTINGS = {"r_min": NOT_FLOAT, "r_max": NOT_FLOAT, "max_phase": NOT_FLOAT}
FACTORY_SETTINGS = {f"rnnjax.{flavour}LRU": LRU_SETTINGS for flavour in ("", "nnx.", "linen.")}
FACTORY_SETTINGS["rnnjax.lru"] = FACTORY_SETTINGS.pop("rnnjax.LRU")
for flavour in ("rnnjax.layer_norm_lstm", "rnnjax.nnx.LayerNormLSTM", "rnnjax.linen.LayerNormLSTM"):
    FACTORY_SETTINGS[flavour] = {"epsilon": NOT_FLOAT}
FACTORY_SETTINGS["rnnjax.lstm"] = {"peephole": NOT_BOOL, "initializer": ["he", 3, "Keras"]}
FACTORY_SETTINGS["rnnjax.gru"] = {"reset_after": NOT_BOOL}


def malformed_factory(rng: random.Random) -> tuple[str, Callable[[], Any], str]:
    """One cell factory (or named module) with one bad setting: ``(argument, call, entry)``."""
    entry = rng.choice(sorted(FACTORY_SETTINGS))
    argument = rng.choice(sorted(FACTORY_SETTINGS[entry]))
    setting = {argument: rng.choice(FACTORY_SETTINGS[entry][argument])}
    flavour, _, name = entry.rpartition(".")
    if flavour == "rnnjax.nnx":
        return argument, lambda: getattr(rnnjax.nnx, name)(3, 4, rngs=nnx.Rngs(0), **setting), entry
    if flavour == "rnnjax.linen":
        module = getattr(rnnjax.linen, name)(HIDDEN, **setting)
        return argument, lambda: module.init(jax.random.key(0), XS), entry
    return argument, lambda: getattr(rnnjax, name)(HIDDEN, **setting), entry


ENTRY_POINTS = {
    "rnnjax.rnn": malformed_rnn,
    "step": malformed_step,
    "rnnjax.layer": malformed_layer,
    "rnnjax.nnx.LSTM": malformed_nnx,
    "rnnjax.linen.LSTM": malformed_linen,
    "cell factories": malformed_factory,
}
ALIASES = {"x": "x", "carry": "carry", "in_features": r"in_features|input_size", "xs": r"xs"}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_malformed_calls_raise_named_errors(entry):
    rng = random.Random(entry)
    where = re.escape(entry) if entry != "step" else r"rnnjax\.(lstm|gru)\(4\)\.step"
    for _ in range(220):
        argument, call, *called = ENTRY_POINTS[entry](rng)
        where = re.escape(called[0]) + ":" if called else where
        named = ALIASES.get(argument, re.escape(argument))
        with pytest.raises((TypeError, ValueError)) as raised:
            call()
        message = str(raised.value)
        assert re.search(where, message), (argument, message)
        assert re.search(named, message) or argument == "cell", (argument, message)
        COUNTS[entry, "named error"] += 1
    assert COUNTS[entry, "named error"] >= 200


# --- Valid edge inputs: the result a reference call gives ----------------------------------


@pytest.mark.parametrize("name", sorted(CELLS))
def test_valid_edges_equal_a_reference(name):
    cell, params = CELLS[name], PARAMS[name]
    _, ys = rnnjax.rnn(cell, params, XS[:0])
    assert ys.shape == (0, TIME, HIDDEN)
    carry, ys = rnnjax.rnn(cell, params, XS[:, :0])
    assert ys.shape == (BATCH, 0, HIDDEN)
    jax.tree.map(np.testing.assert_array_equal, carry, cell.initial_carry(params, BATCH))
    segments = rnnjax.layer(cell, remat="segments")
    jax.tree.map(np.testing.assert_array_equal, segments.apply(params, XS[:, :0]), (carry, ys))
    assert segments.apply(params, XS[:0])[1].shape == (0, TIME, HIDDEN)
    lengths = jnp.array([TIME, 2])
    want = rnnjax.rnn(cell, params, XS, seq_lengths=lengths)
    poisoned = XS.at[1, 2:].set(jnp.nan)
    got = jax.jit(functools.partial(rnnjax.rnn, cell))(params, poisoned, seq_lengths=lengths)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    full = rnnjax.rnn(cell, params, XS)[1]
    for dtype, tol in ((jnp.float16, 2e-2), (jnp.bfloat16, 5e-2)):
        _, ys = rnnjax.rnn(cell, as_dtype(params, dtype), XS.astype(dtype))
        assert ys.dtype == dtype
        np.testing.assert_allclose(ys.astype(jnp.float32), full, atol=tol)


def test_lengths_under_jit_are_clamped_as_documented():
    """Eagerly out-of-range lengths raise; under ``jit`` they cannot be read, and act as if
    clamped to ``[0, time]`` (docs/guides/layers.md, "What is checked where")."""
    cell, params = CELLS["gru"], PARAMS["gru"]
    with pytest.raises(ValueError, match=r"rnnjax.rnn: seq_lengths must lie in \[0, 5\]"):
        rnnjax.rnn(cell, params, XS, seq_lengths=jnp.array([-3, 9]))
    run = jax.jit(functools.partial(rnnjax.rnn, cell))
    got = run(params, XS, seq_lengths=jnp.array([-3, 9]))
    want = rnnjax.rnn(cell, params, XS, seq_lengths=jnp.array([0, TIME]))
    jax.tree.map(np.testing.assert_array_equal, got, want)


# --- The issue's reproductions, pinned -----------------------------------------------------

MIN_GRU = rnnjax.min_gru(HIDDEN)
MIN_PARAMS = MIN_GRU.init(jax.random.key(0), FEATURES)
GRU, GRU_PARAMS = CELLS["gru"], PARAMS["gru"]
REPRODUCTIONS = [
    (
        lambda: rnnjax.rnn(GRU, GRU_PARAMS, XS, initial_carry=jnp.zeros((2, 4), jnp.int32)),
        TypeError,
        r"rnnjax.rnn: initial_carry must be a real floating array .*dtype int32",
    ),
    (lambda: rnnjax.lstm(True), TypeError, r"rnnjax.lstm: hidden_size must be an int"),
    (
        lambda: rnnjax.nnx.LSTM(3, True, rngs=nnx.Rngs(0)),
        TypeError,
        r"rnnjax.nnx.LSTM: features must be an int",
    ),
    (
        lambda: rnnjax.rnn(GRU, GRU_PARAMS, XS, time_major="no"),
        TypeError,
        r"rnnjax.rnn: time_major must be True or False; got 'no'",
    ),
    (
        lambda: rnnjax.rnn(GRU, GRU_PARAMS, XS, remat="no"),
        ValueError,
        r"rnnjax.rnn: remat must be one of",
    ),
    (
        lambda: rnnjax.nnx.LSTM(3, 4, return_sequences="no", rngs=nnx.Rngs(0)),
        TypeError,
        r"rnnjax.nnx.LSTM: return_sequences must be True or False",
    ),
    (
        lambda: rnnjax.linen.LSTM(4, go_backwards="no").init(jax.random.key(0), XS),
        TypeError,
        r"rnnjax.linen.LSTM: go_backwards must be True or False",
    ),
    (
        lambda: NNX_LSTM(XS, deterministic="False"),
        TypeError,
        r"rnnjax.nnx.LSTM: deterministic must be True or False",
    ),
    (
        lambda: rnnjax.layer(GRU, remat="segments").apply(
            GRU_PARAMS, XS, seq_lengths=jnp.array([-3, 9])
        ),
        ValueError,
        r"rnnjax.layer: seq_lengths must lie in \[0, 5\]",
    ),
    (
        lambda: rnnjax.layer(GRU, remat="segments").apply(GRU_PARAMS, XS, seq_lengths=[1, 2]),
        ValueError,
        r"rnnjax.layer: seq_lengths must have shape \(2,\)",
    ),
    (
        lambda: GRU.step(GRU_PARAMS, jnp.zeros((2, 4)), jnp.ones((2, 3), jnp.uint8)),
        TypeError,
        r"rnnjax.gru\(4\).step: x must be a real floating array",
    ),
    (
        lambda: rnnjax.nnx.LSTM(3, 4, stack_dropout=3.0, rngs=nnx.Rngs(0)),
        ValueError,
        r"rnnjax.nnx.LSTM: stack_dropout must be a number in \[0, 1\)",
    ),
    (
        lambda: rnnjax.nnx.LSTM(3, 4, stack_dropout=0.5, rngs=nnx.Rngs(0)),
        ValueError,
        r"rnnjax.nnx.LSTM: stack_dropout acts between stacked layers",
    ),
    (
        lambda: rnnjax.rnn(MIN_GRU, MIN_PARAMS, XS, hoist_projection=True),
        ValueError,
        r"rnnjax.rnn: hoist_projection=True needs a cell with the `projection` capability",
    ),
    (
        lambda: rnnjax.rnn(MIN_GRU, MIN_PARAMS, XS, unroll=4),
        ValueError,
        r"rnnjax.rnn: unroll=4 applies to a sequential scan",
    ),
    (
        lambda: rnnjax.rnn(rnnjax.lstm, PARAMS["lstm"], XS),
        TypeError,
        r"rnnjax.rnn: cell must be an rnnjax.Cell.*call the factory first",
    ),
    (
        lambda: rnnjax.rnn(GRU, as_dtype(GRU_PARAMS, jnp.int32), XS),
        TypeError,
        r"rnnjax.rnn: params.kernel must be a real floating array",
    ),
    (
        lambda: rnnjax.nnx.LSTM(3, 4, param_dtype=jnp.int32, rngs=nnx.Rngs(0)),
        TypeError,
        r"rnnjax.nnx.LSTM: param_dtype must be a real floating dtype",
    ),
    (
        lambda: rnnjax.layer(GRU).init(jax.random.key(0), 0),
        ValueError,
        r"rnnjax.layer\(...\).init: input_size must be an int >= 1; got 0",
    ),
    (
        lambda: rnnjax.nnx.LSTM(2.5, 4, rngs=nnx.Rngs(0)),
        TypeError,
        r"rnnjax.nnx.LSTM: in_features must be an int",
    ),
    (
        lambda: rnnjax.nnx.LSTM(3, 4, rngs=None),
        TypeError,
        r"rnnjax.nnx.LSTM: rngs must be an nnx.Rngs",
    ),
    (
        lambda: rnnjax.layer(GRU, compute_dtype="float99"),
        TypeError,
        r"rnnjax.layer: compute_dtype must be a real floating dtype",
    ),
    (
        lambda: rnnjax.rnn(GRU, GRU_PARAMS, XS, unroll="2"),
        TypeError,
        r"rnnjax.rnn: unroll must be an int >= 1",
    ),
    (
        lambda: rnnjax.linen.LSTM(4).init(jax.random.key(0), jnp.zeros(())),
        ValueError,
        r"rnnjax.linen.LSTM: xs must have shape \[\*batch, time, features\]",
    ),
    (
        lambda: rnnjax.linen.LSTM(4, dropout=0.1).init(jax.random.key(0), XS),
        ValueError,
        r"rnnjax.linen.LSTM: deterministic must be given to the module or to the call",
    ),
    (
        lambda: rnnjax.linen.LSTM(4).init(jax.random.key(0), None),
        ValueError,
        r"rnnjax.linen.LSTM: xs must have shape",
    ),
]


@pytest.mark.parametrize("index", range(len(REPRODUCTIONS)))
def test_issue_reproductions(index):
    call, error, message = REPRODUCTIONS[index]
    with pytest.raises(error, match=message):
        call()
