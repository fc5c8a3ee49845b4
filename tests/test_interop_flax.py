"""rnnjax.interop.from_flax / to_flax against flax.linen.RNN and flax.nnx.RNN, same weights."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import nnx

import rnnjax
import rnnjax.interop

BATCH, TIME, INPUT, HIDDEN = 2, 5, 3, 4
CELLS = [
    (api, name)
    for api in ("linen", "nnx")
    for name in ("LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell")
]


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
    with jax.default_matmul_precision("highest"):
        yield


def make_flax_cell(api, name, **options):
    if api == "linen":
        return getattr(nn, name)(HIDDEN, **options)
    return getattr(nnx, name)(INPUT, HIDDEN, rngs=nnx.Rngs(0), **options)


def noisy(tree, seed):
    """Every leaf plus N(0, 0.5) noise, so that zero-initialised biases are not zero."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noise = [0.5 * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, [leaf + n for leaf, n in zip(leaves, noise, strict=True)])


def inputs():
    return jax.random.normal(jax.random.key(7), (BATCH, TIME, INPUT))


def flax_params(flax_cell):
    """Random params with nonzero biases: linen, the cell's own dict; nnx, its Param state."""
    if isinstance(flax_cell, nnx.Module):
        state = nnx.state(flax_cell, nnx.Param)
        nnx.replace_by_pure_dict(state, noisy(nnx.to_pure_dict(state), 1))
        return state
    variables = nn.RNN(flax_cell).init(jax.random.key(0), inputs())
    return noisy(variables["params"]["cell"], 1)


def flax_run(flax_cell, params, xs):
    """``(final carry, ys)`` of Flax's own RNN over the cell with ``params``."""
    if isinstance(flax_cell, nnx.Module):
        nnx.update(flax_cell, params)
        return nnx.RNN(flax_cell, return_carry=True)(xs)
    return nn.RNN(flax_cell, return_carry=True).apply({"params": {"cell": params}}, xs)


def assert_same_run(flax_carry, flax_ys, carry, ys):
    if isinstance(carry, rnnjax.LSTMState):  # Flax's LSTM carry is (c, h)
        carry = (carry.c, carry.h)
    np.testing.assert_allclose(ys, flax_ys, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 carry, flax_carry)  # fmt: skip


@pytest.mark.parametrize("api, name", CELLS)
def test_from_flax_matches_flax_rnn(api, name):
    flax_cell = make_flax_cell(api, name)
    params = flax_params(flax_cell)
    cell, rnnjax_params = rnnjax.interop.from_flax(flax_cell, params)
    xs = inputs()
    assert_same_run(*flax_run(flax_cell, params, xs), *rnnjax.rnn(cell, rnnjax_params, xs))


@pytest.mark.parametrize("api, name", CELLS)
def test_to_flax_matches_rnnjax_and_round_trips(api, name):
    flax_cell = make_flax_cell(api, name)
    cell, _ = rnnjax.interop.from_flax(flax_cell, flax_params(flax_cell))
    params = noisy(cell.init(jax.random.key(3), INPUT), 2)
    if api == "nnx" and name == "GRUCell":  # no recurrent bias for the candidate n
        params = params._replace(recurrent_bias=params.recurrent_bias.at[2 * HIDDEN :].set(0))
    converted = rnnjax.interop.to_flax(flax_cell, params)
    xs = inputs()
    assert_same_run(*flax_run(flax_cell, converted, xs), *rnnjax.rnn(cell, params, xs))
    _, back = rnnjax.interop.from_flax(flax_cell, converted)
    if name == "GRUCell":  # the r and z recurrent biases come back summed into the input bias
        params = params._replace(
            bias=params.bias + params.recurrent_bias.at[2 * HIDDEN :].set(0),
            recurrent_bias=params.recurrent_bias.at[: 2 * HIDDEN].set(0),
        )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), back, params)


def test_nnx_params_default_to_the_module_state_and_simple_cell_keeps_its_activation():
    flax_cell = make_flax_cell("nnx", "SimpleCell", activation_fn=jax.nn.relu)
    cell, params = rnnjax.interop.from_flax(flax_cell)
    xs = inputs()
    assert_same_run(*nnx.RNN(flax_cell, return_carry=True)(xs), *rnnjax.rnn(cell, params, xs))


def test_from_flax_errors():
    from_flax = rnnjax.interop.from_flax
    with pytest.raises(TypeError, match=r"from_flax: flax_cell must be a flax.linen or flax.nnx"):
        from_flax(rnnjax.lstm(4), {})
    with pytest.raises(TypeError, match=r"got MGUCell"):
        from_flax(nn.MGUCell(4), {})
    with pytest.raises(ValueError, match=r"needs LSTMCell.gate_fn = jax.nn.sigmoid"):
        from_flax(nn.LSTMCell(4, gate_fn=jax.nn.hard_sigmoid), {})
    with pytest.raises(ValueError, match=r"SimpleCell with residual=True has no rnnjax"):
        from_flax(nn.SimpleCell(4, residual=True), {})
    with pytest.raises(TypeError, match=r"a flax.linen module holds no params"):
        from_flax(nn.GRUCell(4))
    variables = {"params": flax_params(nn.GRUCell(HIDDEN))}
    with pytest.raises(ValueError, match=r"pass variables\['params'\], not variables"):
        from_flax(nn.GRUCell(HIDDEN), variables)


def test_to_flax_errors():
    to_flax = rnnjax.interop.to_flax
    lstm_params = rnnjax.lstm(HIDDEN).init(jax.random.key(0), INPUT)
    with pytest.raises(TypeError, match=r"to_flax: a GRUCell takes GRUParams; got LSTMParams"):
        to_flax(nn.GRUCell(HIDDEN), lstm_params)
    with pytest.raises(
        ValueError, match=r"LSTMCell has features=8; the params have input size 3 and hidden size 4"
    ):
        to_flax(nn.LSTMCell(8), lstm_params)
    with pytest.raises(
        ValueError, match=r"has in_features=5, hidden_features=4; the params have input size 3"
    ):
        to_flax(nnx.LSTMCell(5, HIDDEN, rngs=nnx.Rngs(0)), lstm_params)
    old_gru = rnnjax.gru(HIDDEN, reset_after=False).init(jax.random.key(0), INPUT)
    with pytest.raises(ValueError, match=r"recurrent_bias=None \(reset_after=False\)"):
        to_flax(nn.GRUCell(HIDDEN), old_gru)
    gru = rnnjax.gru(HIDDEN, initializer="torch").init(jax.random.key(0), INPUT)
    with pytest.raises(ValueError, match=r"nnx.GRUCell has no recurrent bias for the candidate"):
        to_flax(make_flax_cell("nnx", "GRUCell"), gru)


@pytest.mark.parametrize("factory", [rnnjax.lstm, rnnjax.gru, rnnjax.simple_rnn])
def test_to_flax_of_an_rnnjax_cell_targets_its_linen_twin(factory):
    cell = factory(HIDDEN)
    params = noisy(cell.init(jax.random.key(3), INPUT), 2)
    converted = rnnjax.interop.to_flax(cell, params)
    twin = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "simple_rnn": nn.SimpleCell}[factory.__name__]
    xs = inputs()
    assert_same_run(*flax_run(twin(HIDDEN), converted, xs), *rnnjax.rnn(cell, params, xs))
    with pytest.raises(TypeError, match=r"rnnjax.interop.to_flax: given an rnnjax cell"):
        rnnjax.interop.to_flax(
            rnnjax.min_gru(HIDDEN), rnnjax.min_gru(HIDDEN).init(jax.random.key(0), 2)
        )
