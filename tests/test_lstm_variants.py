"""The peephole LSTM and the layer-normalised LSTM beyond the shared cell tests
(tests/cells_under_test.py runs both through the reference, masking, reverse, gradient,
fast-backward and jvp tests): their gate weights, initial values, settings and errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from rnnjax._src.cells.registry import make_cell
from tests import cells_under_test
from tests.cells_under_test import CASES

HIDDEN, FEATURES = 5, 3
PEEPHOLE = rnnjax.lstm(HIDDEN, peephole=True)
LAYER_NORM = rnnjax.layer_norm_lstm(HIDDEN)


def random_params(cell, dtype=jnp.float32):
    """Every entry random (gains and biases too), as the shared cell tests draw them."""
    case = next(case for case in CASES if case.cell is cell)
    return cells_under_test.random_params(case, jax.random.key(1), FEATURES, dtype)


def test_peephole_lstm_at_its_initial_zero_peepholes_is_the_lstm():
    params = PEEPHOLE.init(jax.random.key(0), FEATURES)
    assert type(params) is rnnjax.PeepholeLSTMParams
    assert params.peephole.shape == (3 * HIDDEN,) and not params.peephole.any()
    plain = rnnjax.LSTMParams(params.kernel, params.recurrent_kernel, params.bias)
    xs = jax.random.normal(jax.random.key(1), (2, 6, FEATURES))
    lengths = jnp.array([6, 3])
    got = rnnjax.rnn(PEEPHOLE, params, xs, seq_lengths=lengths)
    want = rnnjax.rnn(rnnjax.lstm(HIDDEN), plain, xs, seq_lengths=lengths)
    jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-6), got, want)


def test_the_plain_lstm_params_stay_as_they_were():
    # Checkpoints saved with rnnjax.lstm keep their tree: three leaves, these names.
    params = rnnjax.lstm(HIDDEN).init(jax.random.key(0), FEATURES)
    assert type(params) is rnnjax.LSTMParams
    assert params._fields == ("kernel", "recurrent_kernel", "bias")


@pytest.mark.parametrize("initializer", ["keras", "torch", "flax"])
def test_variants_draw_the_lstm_weights_and_start_their_norms_at_identity(initializer):
    key = jax.random.key(3)
    lstm = rnnjax.lstm(HIDDEN, initializer=initializer).init(key, FEATURES)
    for cell in (
        rnnjax.lstm(HIDDEN, initializer=initializer, peephole=True),
        rnnjax.layer_norm_lstm(HIDDEN, initializer=initializer),
    ):
        params = cell.init(key, FEATURES)
        jax.tree.map(np.testing.assert_array_equal, tuple(params[:3]), tuple(lstm))
    params = rnnjax.layer_norm_lstm(HIDDEN, initializer=initializer).init(key, FEATURES)
    for gain in (params.input_gain, params.recurrent_gain, params.cell_gain):
        np.testing.assert_array_equal(gain, np.ones_like(gain))
    np.testing.assert_array_equal(params.cell_bias, np.zeros(HIDDEN))
    assert params.input_gain.shape == params.recurrent_gain.shape == (4 * HIDDEN,)


def gate_weight_loss(cell, fields, params, xs, carry, lengths):
    """A loss of the gate weights ``fields`` alone, through the fast backward pass."""

    def loss(*weights):
        full = params._replace(**dict(zip(fields, weights, strict=True)))
        final, ys = rnnjax.rnn(cell, full, xs, initial_carry=carry, seq_lengths=lengths)
        return jnp.sum(ys * jnp.cos(ys)) + jnp.sum(jnp.sin(final.c))

    return loss


@pytest.mark.parametrize(
    "cell, fields",
    [
        (PEEPHOLE, ("peephole",)),
        (LAYER_NORM, ("recurrent_gain", "cell_gain", "cell_bias")),
        (LAYER_NORM, ("input_gain",)),
    ],
    ids=["peephole", "layer_norm-gates", "layer_norm-projection"],
)
def test_gate_weights_pass_check_grads_through_the_fast_backward_pass(cell, fields):
    # Their tangents enter the tangent scan through `gates` only (the input gain through the
    # projection): checked in float64 against finite differences, forward and reverse.
    assert cell.gate_split is not None
    with jax.enable_x64(True):
        params = random_params(cell, jnp.float64)
        xs = jax.random.normal(jax.random.key(2), (3, 5, FEATURES), jnp.float64)
        carry = rnnjax.LSTMState(*jax.random.normal(jax.random.key(4), (2, 3, HIDDEN), jnp.float64))
        loss = gate_weight_loss(cell, fields, params, xs, carry, jnp.array([5, 2, 0]))
        weights = tuple(getattr(params, field) for field in fields)
        check_grads(jax.jit(loss), weights, order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)


def test_layer_norm_lstm_ignores_the_scale_of_its_kernels():
    # Each of x W and h U is normalised on its own: scaling either kernel changes nothing
    # (with epsilon out of the way); normalising their sum instead would not have this property.
    cell = rnnjax.layer_norm_lstm(HIDDEN, epsilon=1e-12)
    params = random_params(LAYER_NORM)
    xs = jax.random.normal(jax.random.key(2), (2, 6, FEATURES))
    carry = rnnjax.LSTMState(*jax.random.normal(jax.random.key(3), (2, 2, HIDDEN)))
    want = rnnjax.rnn(cell, params, xs, initial_carry=carry)
    scaled = params._replace(kernel=7 * params.kernel, recurrent_kernel=params.recurrent_kernel / 4)
    got = rnnjax.rnn(cell, scaled, xs, initial_carry=carry)
    jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5), got, want)


def test_equal_settings_give_the_same_cell():
    assert rnnjax.lstm(8, peephole=True) is rnnjax.lstm(hidden_size=8, peephole=True)
    assert rnnjax.lstm(8, peephole=False) is rnnjax.lstm(8)
    assert rnnjax.lstm(8, peephole=True) is not rnnjax.lstm(8)
    assert rnnjax.layer_norm_lstm(8) is rnnjax.layer_norm_lstm(8, epsilon=1e-5)
    assert rnnjax.layer_norm_lstm(8) is not rnnjax.layer_norm_lstm(8, epsilon=1e-3)
    assert make_cell("lstm", 8, peephole=True) is rnnjax.lstm(8, peephole=True)
    assert make_cell("layer_norm_lstm", 8, epsilon=1e-3) is rnnjax.layer_norm_lstm(8, epsilon=1e-3)


def test_bad_settings():
    with pytest.raises(TypeError, match=r"rnnjax.lstm: peephole must be True or False; got 1 "):
        rnnjax.lstm(4, peephole=1)
    with pytest.raises(TypeError, match=r"rnnjax.layer_norm_lstm: epsilon must be a real number"):
        rnnjax.layer_norm_lstm(4, epsilon="1e-5")
    for bad in (0.0, -1e-5, float("nan")):
        with pytest.raises(ValueError, match=rf"layer_norm_lstm: epsilon must be .*; got {bad}"):
            rnnjax.layer_norm_lstm(4, epsilon=bad)
    with pytest.raises(
        ValueError, match=r"rnnjax.layer_norm_lstm: hidden_size must be an int >= 1; got 0"
    ):
        rnnjax.layer_norm_lstm(0)


def test_plain_lstm_params_in_a_peephole_lstm_are_named():
    params = rnnjax.lstm(HIDDEN).init(jax.random.key(0), FEATURES)
    carry = PEEPHOLE.initial_carry(params, 2)
    with pytest.raises(
        ValueError,
        match=r"rnnjax.lstm\(5, peephole=True\): params must be PeepholeLSTMParams\(.*"
        r"peephole=\(15,\)\); got LSTMParams with .*peephole=missing",
    ):
        PEEPHOLE.step(params, carry, jnp.ones((2, FEATURES)))
