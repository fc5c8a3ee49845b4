"""``rnnjax.nnx.RNN``/``Step`` and ``rnnjax.linen.RNN``/``Step`` over any cell.

A cell written in a test file (dict params, dict carry: ``tests.test_custom_cell``'s peephole
LSTM) and an attention cell run through the generic modules, inside Flax's own ``RNN``,
bidirectional and stacked, and equal the functional calls on the modules' params. The named
modules are checked against the registry: every kind has its four modules.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import rnnjax
import rnnjax.linen
import rnnjax.nnx
from rnnjax._src.cells.registry import CELL_KINDS
from tests.test_custom_cell import BATCH, FEATURES, HIDDEN, LENGTHS, PEEPHOLE, PEEPHOLE_PROJECTED

TIME = 6
exact = functools.partial(np.testing.assert_allclose, rtol=0, atol=0)
close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)


def inputs(seed=0):
    return jax.random.normal(jax.random.key(seed), (BATCH, TIME, FEATURES))


def attention_cell():
    memory = jax.random.normal(jax.random.key(7), (BATCH, 4, 3))
    return rnnjax.attention(rnnjax.lstm(HIDDEN), memory, jnp.array([4, 2, 0]), kind="luong")


@pytest.mark.parametrize("cell", [PEEPHOLE_PROJECTED, attention_cell()], ids=["dict", "attention"])
def test_nnx_and_linen_rnn_equal_the_functional_call(cell):
    xs = inputs()
    module = rnnjax.nnx.RNN(
        cell, FEATURES, return_sequences=True, return_state=True, rngs=nnx.Rngs(0)
    )
    ys, state = module(xs, seq_lengths=LENGTHS)
    want_state, want_ys = rnnjax.rnn(cell, module.params, xs, seq_lengths=LENGTHS)
    jax.tree.map(exact, (ys, state), (want_ys, want_state))

    linen_module = rnnjax.linen.RNN(cell, return_state=True)
    variables = linen_module.init(jax.random.key(0), xs)
    last, state = linen_module.apply(variables, xs, seq_lengths=LENGTHS)
    want_state, _ = rnnjax.rnn(cell, variables["params"]["cell"], xs, seq_lengths=LENGTHS)
    jax.tree.map(exact, state, want_state)
    exact(last, cell.output(want_state))


def test_step_modules_run_inside_flax_rnn():
    xs = inputs()
    step = rnnjax.nnx.Step(PEEPHOLE, FEATURES, rngs=nnx.Rngs(0))
    _, want = rnnjax.rnn(PEEPHOLE, step.params, xs)
    close(nnx.RNN(step)(xs), want)

    driver = nn.RNN(rnnjax.linen.Step(PEEPHOLE))
    variables = driver.init(jax.random.key(0), xs)
    _, want = rnnjax.rnn(PEEPHOLE, variables["params"]["cell"]["cell"], xs)
    close(driver.apply(variables, xs), want)


def test_bidirectional_and_stacked_custom_cell():
    xs = inputs()
    rngs = nnx.Rngs(0)
    bi = rnnjax.nnx.Bidirectional(
        rnnjax.nnx.RNN(PEEPHOLE, FEATURES, return_sequences=True, rngs=rngs), rngs=rngs
    )
    layer = rnnjax.layer(PEEPHOLE)
    _, want = rnnjax.bidirectional(layer).apply(bi.params, xs, seq_lengths=LENGTHS)
    exact(bi(xs, seq_lengths=LENGTHS), want)

    deep = rnnjax.linen.RNN(PEEPHOLE, num_layers=2, return_sequences=True)
    variables = deep.init(jax.random.key(1), xs)
    stacked = rnnjax.stack(layer, layer)
    _, want = stacked.apply(variables["params"]["cell"], xs, seq_lengths=LENGTHS)
    exact(deep.apply(variables, xs, seq_lengths=LENGTHS), want)
    assert jax.tree.map(jnp.shape, variables["params"]["cell"][1])["w"] == (HIDDEN, 4 * HIDDEN)


def test_recurrent_dropout_needs_the_projection_capability():
    with pytest.raises(ValueError, match=r"rnnjax.nnx.RNN: recurrent_dropout needs a cell"):
        rnnjax.nnx.RNN(PEEPHOLE, FEATURES, recurrent_dropout=0.5, rngs=nnx.Rngs(0))
    module = rnnjax.nnx.RNN(PEEPHOLE_PROJECTED, FEATURES, recurrent_dropout=0.5, rngs=nnx.Rngs(0))
    xs = inputs()
    assert not np.allclose(module(xs), module(xs, deterministic=True))
    with pytest.raises(ValueError, match=r"rnnjax.linen.RNN: recurrent_dropout needs a cell"):
        rnnjax.linen.RNN(PEEPHOLE, recurrent_dropout=0.5).init(jax.random.key(0), xs)


def test_generic_module_errors_name_the_module():
    with pytest.raises(TypeError, match=r"nnx.RNN: cell must be an rnnjax.Cell.*rnnjax.lstm"):
        rnnjax.nnx.RNN(rnnjax.lstm, FEATURES, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"rnnjax.linen.Step: cell must be an rnnjax.Cell"):
        rnnjax.linen.Step(None).init(jax.random.key(0), jnp.zeros((2, HIDDEN)), jnp.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"rnnjax.nnx.RNN: rngs must be an nnx.Rngs"):
        rnnjax.nnx.RNN(PEEPHOLE, FEATURES, rngs=None)
    with pytest.raises(TypeError, match=r"rnnjax.linen.RNN: return_sequences must be True or"):
        rnnjax.linen.RNN(PEEPHOLE, return_sequences="no").init(jax.random.key(0), inputs())


@pytest.mark.parametrize("kind", sorted(CELL_KINDS))
def test_every_registered_kind_has_its_four_modules(kind):
    """A kind's modules are the generic ones over ``CELL_KINDS[kind].make(features)``."""
    name = CELL_KINDS[kind].module_name
    cell = CELL_KINDS[kind].make(HIDDEN)
    xs = inputs()
    sequence = getattr(rnnjax.nnx, name)(FEATURES, HIDDEN, rngs=nnx.Rngs(0))
    step = getattr(rnnjax.nnx, f"{name}Cell")(FEATURES, HIDDEN, rngs=nnx.Rngs(0))
    assert sequence.recurrent.cell is cell and step.recurrent.cell is cell
    exact(sequence(xs), cell.output(rnnjax.rnn(cell, sequence.params, xs)[0]))
    linen_sequence = getattr(rnnjax.linen, name)(HIDDEN)
    variables = linen_sequence.init(jax.random.key(0), xs)
    want = cell.output(rnnjax.rnn(cell, variables["params"]["cell"], xs)[0])
    exact(linen_sequence.apply(variables, xs), want)
    linen_step = getattr(rnnjax.linen, f"{name}Cell")(HIDDEN)
    carry = linen_step.initialize_carry(jax.random.key(0), xs[:, 0].shape)
    _, y = linen_step.apply(variables, carry, xs[:, 0])
    exact(y, cell.step(variables["params"]["cell"], carry, xs[:, 0])[1])
