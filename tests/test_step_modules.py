"""Step modules (rnnjax.nnx.LSTMCell, rnnjax.linen.LSTMCell, ...): one time step of the
sequence modules on the same params, in Flax's cell protocol.

References: the sequence modules (bit for bit on CPU, where the step is compiled as the scan
compiles it), Flax's own ``nn.RNN``/``nnx.RNN`` semantics, and torch's ``nn.LSTM``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import rnnjax
import rnnjax.interop
import rnnjax.linen
import rnnjax.nnx
from tests.peers import import_peer
from tests.test_nnx import BATCH, FEATURES, HIDDEN, TIME, assert_equal, inputs

LENGTHS = jnp.array([6, 1, 3])  # Flax's RNN reads the carry at step len - 1: no length 0

# name: (module name without "Cell", settings); every cell kind, and a compute dtype.
KINDS = {
    "simple_rnn-relu": ("SimpleRNN", {"activation": jax.nn.relu}),
    "lstm": ("LSTM", {}),
    "lstm-bf16": ("LSTM", {"dtype": jnp.bfloat16, "initializer": "torch"}),
    "gru": ("GRU", {}),
    "gru-reset_before": ("GRU", {"reset_after": False}),
    "min_gru": ("MinGRU", {}),
    "min_lstm": ("MinLSTM", {}),
}


def nnx_pair(kind, **sequence_options):
    """An rnnjax.nnx sequence module and the step module of the same kind, settings, params."""
    name, settings = KINDS[kind]
    sequence = getattr(rnnjax.nnx, name)(
        FEATURES, HIDDEN, rngs=nnx.Rngs(0), **settings, **sequence_options
    )
    step = getattr(rnnjax.nnx, name + "Cell")(FEATURES, HIDDEN, rngs=nnx.Rngs(1), **settings)
    return sequence, step


def linen_pair(kind, **sequence_options):
    name, settings = KINDS[kind]
    sequence = getattr(rnnjax.linen, name)(HIDDEN, **settings, **sequence_options)
    return sequence, getattr(rnnjax.linen, name + "Cell")(HIDDEN, **settings)


def assert_same(actual, expected):
    """Bit for bit on CPU, where the sequence modules step as the step modules do; elsewhere
    they may hoist the input projection or run min cells as a parallel scan (float32
    rounding)."""
    if jax.default_backend() == "cpu":
        assert_equal(actual, expected)
    else:
        for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("api", ["nnx", "linen"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_stepping_equals_sequence_module_bit_for_bit(kind, api):
    """Flax's own RNN (a scan of the step module) and a jitted step in a Python loop both
    give the sequence module's outputs and final carry on its params."""
    xs = inputs()
    options = {"return_sequences": True, "return_state": True, "hoist_projection": False}
    if api == "nnx":
        sequence, cell = nnx_pair(kind, **options)
        cell.load_params(sequence.params)
        carry, ys = nnx.RNN(cell, return_carry=True)(xs)
        step = functools.partial(nnx.jit(lambda cell, carry, x: cell(carry, x)), cell)
        loop_carry = cell.initialize_carry(xs[:, 0].shape)
        want_ys, want_carry = sequence(xs)
    else:
        sequence, cell = linen_pair(kind, **options)
        variables = sequence.init(jax.random.key(0), xs)
        rnn = nn.RNN(cell, return_carry=True)
        carry, ys = rnn.apply({"params": {"cell": variables["params"]}}, xs)
        step = functools.partial(jax.jit(cell.apply), variables)  # params an argument
        loop_carry = cell.initialize_carry(jax.random.key(1), xs[:, 0].shape)
        want_ys, want_carry = sequence.apply(variables, xs)
    assert jax.tree.structure(carry) == jax.tree.structure(want_carry)
    assert ys.dtype == want_ys.dtype == jnp.float32
    assert_same(ys, want_ys)
    assert_same(carry, want_carry)
    if kind == "lstm":  # decoding's way: a jitted step in a Python loop
        for t in range(TIME):
            loop_carry, y = step(loop_carry, xs[:, t])
            assert_same(y, want_ys[:, t])
        assert_same(loop_carry, want_carry)


@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_flax_rnn_seq_lengths_and_reverse_as_flax_defines_them(api):
    """Under ``seq_lengths`` Flax's RNN returns each sequence's carry at its last valid step and
    leaves outputs past it unspecified; ``reverse=True`` reads the valid part backwards and
    returns outputs in processing order: Keras's ``go_backwards``."""
    xs = inputs()
    lengths = np.asarray(LENGTHS)
    if api == "nnx":
        forward, cell = nnx_pair("lstm", return_sequences=True, return_state=True)
        backward = rnnjax.nnx.LSTM(
            FEATURES, HIDDEN, return_sequences=True, go_backwards=True, rngs=nnx.Rngs(0)
        )
        backward.load_params(forward.params)
        cell.load_params(forward.params)

        def run(**kw):
            return nnx.RNN(cell, return_carry=True)(xs, seq_lengths=LENGTHS, **kw)

        want_ys, want_carry = forward(xs, seq_lengths=LENGTHS)
        want_reversed = backward(xs, seq_lengths=LENGTHS)
    else:
        forward, cell = linen_pair("lstm", return_sequences=True, return_state=True)
        variables = forward.init(jax.random.key(0), xs)
        wrapped = {"params": {"cell": variables["params"]}}

        def run(**kw):
            rnn = nn.RNN(cell, return_carry=True)
            return rnn.apply(wrapped, xs, seq_lengths=LENGTHS, **kw)

        want_ys, want_carry = forward.apply(variables, xs, seq_lengths=LENGTHS)
        backward = rnnjax.linen.LSTM(HIDDEN, return_sequences=True, go_backwards=True)
        want_reversed = backward.apply(variables, xs, seq_lengths=LENGTHS)
    carry, ys = run()
    reversed_carry, reversed_ys = run(reverse=True)
    np.testing.assert_allclose(carry.h, want_carry.h, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(carry.c, want_carry.c, rtol=1e-6, atol=1e-6)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(ys[b, :n], want_ys[b, :n], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(reversed_ys[b, :n], want_reversed[b, :n], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(  # the reversed run ends at step 0
            reversed_carry.h[b], reversed_ys[b, n - 1], rtol=1e-6, atol=1e-6
        )


def test_load_params_round_trip_between_step_and_sequence_modules():
    sequence, cell = nnx_pair("gru-reset_before")
    assert jax.tree.structure(cell.params) == jax.tree.structure(sequence.params)
    assert not np.allclose(cell.params.kernel, sequence.params.kernel)
    cell.load_params(sequence.params)
    assert_equal(cell.params, sequence.params)
    other = rnnjax.nnx.GRU(FEATURES, HIDDEN, reset_after=False, rngs=nnx.Rngs(5))
    other.load_params(cell.params)
    assert_equal(other.params, sequence.params)
    # The same NNX state paths, so nnx.state of one updates the other.
    paths = {path for path, _ in nnx.to_flat_state(nnx.state(cell, nnx.Param))}
    assert paths == {path for path, _ in nnx.to_flat_state(nnx.state(sequence, nnx.Param))}
    with pytest.raises(ValueError, match=r"LSTMCell\.load_params: params must match"):
        rnnjax.nnx.LSTMCell(FEATURES, HIDDEN, rngs=nnx.Rngs(0)).load_params(sequence.params)
    # linen: the same variables, {"params": {"cell": ...}}, for both.
    xs = inputs()
    lstm, lstm_cell = linen_pair("lstm")
    variables = lstm.init(jax.random.key(0), xs)
    carry = lstm_cell.initialize_carry(jax.random.key(0), xs[:, 0].shape)
    cell_variables = lstm_cell.init(jax.random.key(1), carry, xs[:, 0])
    assert jax.tree.map(jnp.shape, cell_variables) == jax.tree.map(jnp.shape, variables)
    assert jax.tree.structure(cell_variables) == jax.tree.structure(variables)


@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_params_from_torch_step_as_torch_computes(api):
    torch = import_peer("torch")
    torch.manual_seed(0)
    module = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True)
    _, params = rnnjax.interop.from_torch(module)
    xs = inputs()
    with torch.no_grad():
        want_ys, (h_n, c_n) = module(torch.tensor(np.asarray(xs)))
    if api == "nnx":
        cell = rnnjax.nnx.LSTMCell(FEATURES, HIDDEN, rngs=nnx.Rngs(0))
        cell.load_params(params[0][0])  # layer 0, forward direction
        carry, ys = nnx.RNN(cell, return_carry=True)(xs)
    else:
        rnn = nn.RNN(rnnjax.linen.LSTMCell(HIDDEN), return_carry=True)
        carry, ys = rnn.apply({"params": {"cell": {"cell": params[0][0]}}}, xs)
    np.testing.assert_allclose(ys, want_ys.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry.h, h_n[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry.c, c_n[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("api", ["nnx", "linen"])
def test_params_from_keras_step_as_keras_computes(api):
    """A Keras GRU (gates stored z, r, n; two bias rows) through ``from_keras``, stepped by
    Flax's ``RNN`` over the step module: Keras's outputs and final state."""
    keras = import_peer("keras")
    xs = inputs()
    layer = keras.layers.GRU(HIDDEN, return_sequences=True, return_state=True)
    rng = np.random.default_rng(1)
    # Keras broadcasts ranks implicitly (its initialiser, its bias add), so allow it here.
    with jax.numpy_rank_promotion("allow"), jax.default_matmul_precision("highest"):
        layer(np.asarray(xs))  # build
        for variable in layer.weights:  # nonzero biases, nothing at its default
            variable.assign(rng.uniform(-0.5, 0.5, tuple(variable.shape)).astype(np.float32))
        want_ys, want_h = layer(np.asarray(xs))
        _, params = rnnjax.interop.from_keras(layer)
        if api == "nnx":
            cell = rnnjax.nnx.GRUCell(FEATURES, HIDDEN, rngs=nnx.Rngs(0))
            cell.load_params(params)
            h, ys = nnx.RNN(cell, return_carry=True)(xs)
        else:
            rnn = nn.RNN(rnnjax.linen.GRUCell(HIDDEN), return_carry=True)
            h, ys = rnn.apply({"params": {"cell": {"cell": params}}}, xs)
    np.testing.assert_allclose(ys, np.asarray(want_ys), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, np.asarray(want_h), rtol=1e-5, atol=1e-6)


def test_initialize_carry_zeros_in_param_dtype():
    xs = inputs()
    cell = rnnjax.nnx.LSTMCell(FEATURES, HIDDEN, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    carry = cell.initialize_carry((7, 2, FEATURES))
    want = rnnjax.lstm(HIDDEN).initial_carry(cell.params, (7, 2))
    assert isinstance(carry, rnnjax.LSTMState)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), carry) == jax.tree.map(
        lambda a: (a.shape, a.dtype), want
    )
    assert_equal(carry, want)
    linen_cell = rnnjax.linen.LSTMCell(HIDDEN, param_dtype=jnp.bfloat16)
    assert_equal(linen_cell.initialize_carry(jax.random.key(0), (7, 2, FEATURES)), want)
    assert linen_cell.initialize_carry(jax.random.key(0), (7, 2, FEATURES)).h.dtype == jnp.bfloat16
    assert rnnjax.linen.GRUCell(HIDDEN).initialize_carry(None, xs.shape[::2]).shape == (3, 5)
    assert cell.num_feature_axes == linen_cell.num_feature_axes == 1
    # Flax's carry_init, drawn from the rngs' carry stream.
    ones = nnx.initializers.ones
    drawn = cell.initialize_carry((2, FEATURES), rngs=nnx.Rngs(carry=0), carry_init=ones)
    assert_equal(drawn, rnnjax.LSTMState(*(jnp.ones((2, HIDDEN), jnp.bfloat16),) * 2))
    with pytest.raises(ValueError, match=r"LSTMCell.initialize_carry: carry_init needs rngs"):
        cell.initialize_carry((2, FEATURES), carry_init=ones)


def test_errors_name_the_module_argument_and_shapes():
    x = inputs()[:, 0]
    h = jnp.zeros((BATCH, HIDDEN))
    nnx_cell = rnnjax.nnx.LSTMCell(FEATURES, HIDDEN, rngs=nnx.Rngs(0))
    bf16_cell = rnnjax.nnx.LSTMCell(FEATURES, HIDDEN, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    plain = r"carry must be rnnjax.LSTMState\(h=..., c=...\), not a plain tuple"
    for cell in (nnx_cell, bf16_cell):
        with pytest.raises(TypeError, match=r"rnnjax.nnx.LSTMCell: " + plain):
            cell((h, h), x)
    with pytest.raises(ValueError, match=r"rnnjax.nnx.LSTMCell: x must have shape \[\*batch, 4\]"):
        nnx_cell(rnnjax.LSTMState(h, h), jnp.ones((BATCH, FEATURES + 1)))
    with pytest.raises(ValueError, match=r"rnnjax.nnx.GRUCell: carry must have shape \(3, 5\)"):
        rnnjax.nnx.GRUCell(FEATURES, HIDDEN, rngs=nnx.Rngs(0))(jnp.zeros((2, HIDDEN)), x)
    linen_cell = rnnjax.linen.LSTMCell(HIDDEN)
    carry = linen_cell.initialize_carry(jax.random.key(0), x.shape)
    variables = linen_cell.init(jax.random.key(0), carry, x)
    with pytest.raises(TypeError, match=r"rnnjax.linen.LSTMCell: " + plain):
        linen_cell.apply(variables, (h, h), x)
    with pytest.raises(
        ValueError, match=r"rnnjax.linen.LSTMCell: x must have shape \[\*batch, 4\]"
    ):
        linen_cell.apply(variables, carry, jnp.ones((BATCH, FEATURES + 1)))
    wrong_width = r"rnnjax.linen.LSTM: xs must have shape \[\*batch, time, 4\]"
    with pytest.raises(ValueError, match=wrong_width):
        rnnjax.linen.LSTM(HIDDEN).apply(variables, jnp.ones((BATCH, TIME, FEATURES + 1)))
    with pytest.raises(
        TypeError, match=r"rnnjax.nnx.LSTMCell: unknown setting\(s\) \['reset_after'\]"
    ):
        rnnjax.nnx.LSTMCell(FEATURES, HIDDEN, reset_after=True, rngs=nnx.Rngs(0))


def test_jit_vmap_grad_through_a_step_module():
    """Under jit, equal to the functional step bit for bit; vmap over an extra axis; grads
    equal the functional step's."""
    cell = rnnjax.nnx.GRUCell(FEATURES, HIDDEN, rngs=nnx.Rngs(0))
    functional = rnnjax.gru(HIDDEN)
    x = inputs()[:, 0]
    carry = cell.initialize_carry(x.shape)
    got = nnx.jit(lambda cell, carry, x: cell(carry, x))(cell, carry, x)
    assert_equal(got, jax.jit(functional.step)(cell.params, carry, x))

    many = inputs(1, (2, BATCH, FEATURES))  # an extra leading axis, mapped
    mapped = nnx.vmap(lambda x: cell(carry, x)[1])(many)
    np.testing.assert_allclose(mapped, cell(jnp.stack([carry, carry]), many)[1], atol=1e-6)

    grads = nnx.jit(nnx.grad(lambda cell: jnp.sum(cell(carry, x)[1] ** 2)))(cell)
    loss = lambda p: jnp.sum(functional.step(p, carry, x)[1] ** 2)  # noqa: E731
    want = jax.jit(jax.grad(loss))(cell.params)
    for name, value in want._asdict().items():
        np.testing.assert_allclose(grads["cell"][name][...], value, rtol=1e-6, atol=1e-7)
