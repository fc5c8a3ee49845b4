"""Parity of rnnjax with the real peers: PyTorch's ``nn.LSTM``/``nn.GRU``/``nn.RNN`` and Flax's
``nn.RNN`` over ``OptimizedLSTMCell``/``LSTMCell``/``GRUCell``.

Each test builds the peer with random non-default weights (biases included), converts them by
hand into rnnjax params (independently of any conversion code in rnnjax, so it checks the
layouts as well as the equations), runs both on the same inputs and compares every output and
the final state to float32 rounding. Together they prove that:

* the gate order and weight layout of each cell matches the peer (LSTM i, f, g, o; GRU r, z, n
  with PyTorch's and Flax's reset-after form; vanilla RNN with tanh and relu);
* ``rnnjax.rnn(..., seq_lengths=...)`` is a packed sequence: it matches
  ``pack_padded_sequence`` forward, and with ``reverse=True`` the backward half of a packed
  bidirectional PyTorch RNN, zeros at the padding and final state at the last valid step;
* the final carry with ``seq_lengths`` (and ``reverse``) matches the one Flax selects.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from tests.peers import import_peer

ATOL = 2e-5
BATCH, TIME, INPUT, HIDDEN = 4, 6, 5, 4
LENGTHS = np.array([TIME, 1, 4, 2])  # the full length, the shortest, and two in between


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
    """Float32 parity needs float32 matmuls on every backend (no TF32 or bf16 passes)."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def torch():
    return import_peer("torch")


@pytest.fixture(scope="module")
def nn():
    return import_peer("flax.linen")


def assert_close(actual, expected):
    """Every leaf of ``actual`` equals the matching leaf of ``expected`` to float32 rounding."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=ATOL)


def random_inputs(seed, nan_padding=False):
    """``xs [BATCH, TIME, INPUT]``; with ``nan_padding``, NaN past each of ``LENGTHS``."""
    xs = np.random.default_rng(seed).normal(size=(BATCH, TIME, INPUT)).astype(np.float32)
    if nan_padding:
        xs[np.arange(TIME) >= LENGTHS[:, None]] = np.nan
    return xs


# --------------------------------------------------------------------------------------------
# PyTorch

# kind -> (torch.nn class name, its extra arguments, the rnnjax cell)
TORCH_KINDS = {
    "lstm": ("LSTM", {}, rnnjax.lstm(HIDDEN)),
    "gru": ("GRU", {}, rnnjax.gru(HIDDEN, reset_after=True)),
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}, rnnjax.simple_rnn(HIDDEN, jnp.tanh)),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}, rnnjax.simple_rnn(HIDDEN, jax.nn.relu)),
}


def make_torch_rnn(torch, kind, bidirectional):
    """A random float32 ``batch_first`` torch RNN, every parameter from uniform(-0.5, 0.5)."""
    class_name, kwargs, _ = TORCH_KINDS[kind]
    module = getattr(torch.nn, class_name)(
        INPUT, HIDDEN, batch_first=True, bidirectional=bidirectional, **kwargs
    )
    for parameter in module.parameters():
        torch.nn.init.uniform_(parameter, -0.5, 0.5)
    return module


def params_from_torch(module, kind, suffix=""):
    """rnnjax params from a torch RNN's layer-0 weights; ``suffix="_reverse"`` for backward."""

    def weight(name):
        return jnp.asarray(getattr(module, f"{name}_l0{suffix}").detach().numpy())

    kernel, recurrent_kernel = weight("weight_ih").T, weight("weight_hh").T
    bias_ih, bias_hh = weight("bias_ih"), weight("bias_hh")
    if kind == "gru":  # same r, z, n order; the two biases stay apart (reset after)
        return rnnjax.GRUParams(kernel, recurrent_kernel, bias_ih, bias_hh)
    if kind == "lstm":  # same i, f, g, o order
        return rnnjax.LSTMParams(kernel, recurrent_kernel, bias_ih + bias_hh)
    return rnnjax.SimpleRNNParams(kernel, recurrent_kernel, bias_ih + bias_hh)


def random_torch_state(torch, kind, directions):
    """A nonzero initial state for torch: ``h0`` or ``(h0, c0)``, each ``[directions, B, H]``."""
    h0 = torch.randn(directions, BATCH, HIDDEN)
    return (h0, torch.randn(directions, BATCH, HIDDEN)) if kind == "lstm" else h0


def carry_from_torch(kind, state, direction):
    """rnnjax's carry for one direction of a torch state (``h`` or ``(h, c)``)."""
    if kind == "lstm":
        h, c = (jnp.asarray(s[direction].detach().numpy()) for s in state)
        return rnnjax.LSTMState(h, c)
    return jnp.asarray(state[direction].detach().numpy())


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_torch_full_length_with_initial_state(torch, kind, hoist_projection):
    torch.manual_seed(0)
    module = make_torch_rnn(torch, kind, bidirectional=False)
    state0 = random_torch_state(torch, kind, directions=1)
    xs = random_inputs(seed=1)
    with torch.no_grad():
        expected_ys, expected_state = module(torch.from_numpy(xs), state0)

    cell = TORCH_KINDS[kind][2]
    carry, ys = rnnjax.rnn(
        cell,
        params_from_torch(module, kind),
        jnp.asarray(xs),
        initial_carry=carry_from_torch(kind, state0, 0),
        hoist_projection=hoist_projection,
    )
    assert_close(ys, expected_ys.detach().numpy())
    assert_close(carry, carry_from_torch(kind, expected_state, 0))


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_torch_packed_bidirectional(torch, kind, hoist_projection):
    torch.manual_seed(0)
    module = make_torch_rnn(torch, kind, bidirectional=True)
    state0 = random_torch_state(torch, kind, directions=2)
    xs = random_inputs(seed=2, nan_padding=True)  # NaN padding: neither side may read it
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(xs), torch.from_numpy(LENGTHS), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        packed_ys, expected_state = module(packed, state0)
    expected_ys, _ = torch.nn.utils.rnn.pad_packed_sequence(
        packed_ys, batch_first=True, total_length=TIME
    )
    expected_ys = expected_ys.detach().numpy()

    padding = np.arange(TIME) >= LENGTHS[:, None]
    assert (expected_ys[padding] == 0).all()

    cell = TORCH_KINDS[kind][2]
    lengths = jnp.asarray(LENGTHS)
    directions = [("", False), ("_reverse", True)]  # torch's output holds forward, then backward
    for direction, (suffix, reverse) in enumerate(directions):
        carry, ys = rnnjax.rnn(
            cell,
            params_from_torch(module, kind, suffix),
            jnp.asarray(xs),
            initial_carry=carry_from_torch(kind, state0, direction),
            seq_lengths=lengths,
            reverse=reverse,
            hoist_projection=hoist_projection,
        )
        assert_close(ys, expected_ys[..., direction * HIDDEN : (direction + 1) * HIDDEN])
        assert_close(carry, carry_from_torch(kind, expected_state, direction))
        assert (np.asarray(ys)[padding] == 0).all()


# --------------------------------------------------------------------------------------------
# Flax linen

FLAX_CELLS = ["OptimizedLSTMCell", "LSTMCell", "GRUCell"]


def params_from_flax(cell_name, tree):
    """rnnjax params from the tree of a Flax cell, one ``Dense`` (or ``DenseParams``) per gate.

    Flax's LSTM cells put the bias on the recurrent ``h*`` layers only; its GRU puts one on the
    input ``i*`` layers and on ``hn``, which multiplies by ``r`` like PyTorch's ``b_hn``.
    """

    def kernels(prefix, gates):
        return jnp.concatenate([tree[prefix + gate]["kernel"] for gate in gates], axis=-1)

    if cell_name == "GRUCell":
        assert {name: set(layer) for name, layer in tree.items()} == {
            "ir": {"kernel", "bias"},
            "iz": {"kernel", "bias"},
            "in": {"kernel", "bias"},
            "hr": {"kernel"},
            "hz": {"kernel"},
            "hn": {"kernel", "bias"},
        }
        bias = jnp.concatenate([tree[f"i{gate}"]["bias"] for gate in "rzn"])
        zeros = jnp.zeros_like(tree["hn"]["bias"])
        recurrent_bias = jnp.concatenate([zeros, zeros, tree["hn"]["bias"]])
        return rnnjax.GRUParams(kernels("i", "rzn"), kernels("h", "rzn"), bias, recurrent_bias)

    assert {name: set(layer) for name, layer in tree.items()} == {
        **{f"i{gate}": {"kernel"} for gate in "ifgo"},
        **{f"h{gate}": {"kernel", "bias"} for gate in "ifgo"},
    }
    bias = jnp.concatenate([tree[f"h{gate}"]["bias"] for gate in "ifgo"])
    return rnnjax.LSTMParams(kernels("i", "ifgo"), kernels("h", "ifgo"), bias)


@functools.cache
def random_flax_variables(nn, cell_name):
    """The variables of ``nn.RNN(cell)`` as Flax makes them, refilled from uniform(-0.5, 0.5)."""
    model = nn.RNN(getattr(nn, cell_name)(HIDDEN))
    variables = model.init(jax.random.key(0), jnp.zeros((BATCH, TIME, INPUT)))
    rng = np.random.default_rng(4)
    return jax.tree.map(
        lambda leaf: jnp.asarray(rng.uniform(-0.5, 0.5, leaf.shape), leaf.dtype), variables
    )


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cell_name", FLAX_CELLS)
def test_flax(nn, cell_name, with_lengths, reverse):
    is_lstm = cell_name != "GRUCell"
    model = nn.RNN(getattr(nn, cell_name)(HIDDEN), return_carry=True)
    variables = random_flax_variables(nn, cell_name)
    xs = jnp.asarray(random_inputs(seed=3))
    rng = np.random.default_rng(5)
    h0, c0 = (jnp.asarray(rng.normal(size=(BATCH, HIDDEN)), jnp.float32) for _ in range(2))
    lengths = jnp.asarray(LENGTHS) if with_lengths else None

    expected_carry, expected_ys = model.apply(
        variables,
        xs,
        initial_carry=(c0, h0) if is_lstm else h0,  # Flax's LSTM carry is (c, h)
        seq_lengths=lengths,
        reverse=reverse,
        keep_order=True,
    )
    carry, ys = rnnjax.rnn(
        rnnjax.lstm(HIDDEN) if is_lstm else rnnjax.gru(HIDDEN, reset_after=True),
        params_from_flax(cell_name, variables["params"]["cell"]),
        xs,
        initial_carry=rnnjax.LSTMState(h0, c0) if is_lstm else h0,
        seq_lengths=lengths,
        reverse=reverse,
    )

    if is_lstm:
        expected_c, expected_h = expected_carry
        expected_carry = rnnjax.LSTMState(expected_h, expected_c)
    assert_close(carry, expected_carry)
    # Flax computes outputs past the length too (it does not mask them): compare valid steps.
    valid = np.arange(TIME) < (LENGTHS if with_lengths else np.full(BATCH, TIME))[:, None]
    assert_close(np.asarray(ys)[valid], np.asarray(expected_ys)[valid])
    assert (np.asarray(ys)[~valid] == 0).all()
