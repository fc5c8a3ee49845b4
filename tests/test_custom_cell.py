"""A cell the library does not ship runs everywhere a built-in cell runs.

The cell is a peephole LSTM (Gers & Schmidhuber 2000) whose params and carry are plain dicts.
It is checked against a float64 NumPy loop written from its equations, and, with its
peepholes at zero (where it is the LSTM), against ``rnnjax.lstm`` in the layers whose masks
come from a key.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
import rnnjax.training
from tests import reference

BATCH, TIME, FEATURES, HIDDEN = 3, 6, 4, 5
LENGTHS = jnp.array([6, 0, 4])
tight = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)


# --- The cell, as a user would write it ------------------------------------------------------


def _init(key, input_size, dtype=jnp.float32):
    k_w, k_u, k_p = jax.random.split(key, 3)
    return {
        "w": jax.random.normal(k_w, (input_size, 4 * HIDDEN), dtype) * 0.4,
        "u": jax.random.normal(k_u, (HIDDEN, 4 * HIDDEN), dtype) * 0.4,
        "peep": jax.random.normal(k_p, (3, HIDDEN), dtype) * 0.4,  # i, f, o
        "b": jnp.full((4 * HIDDEN,), 0.1, dtype),
    }


def _initial_carry(params, batch_shape, dtype=None):
    shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
    zeros = jnp.zeros((*shape, HIDDEN), dtype or params["u"].dtype)
    return {"h": zeros, "c": zeros}


def _row(vector, like):
    """``vector [n]`` shaped to broadcast against ``like [..., n]`` (tests forbid implicit
    rank promotion)."""
    return vector.reshape((1,) * (like.ndim - 1) + vector.shape)


def _projected_step(params, carry, projected, recurrent_mask):
    h = carry["h"] if recurrent_mask is None else carry["h"] * recurrent_mask
    zi, zf, zg, zo = jnp.split(projected + h @ params["u"], 4, axis=-1)
    p_i, p_f, p_o = (_row(p, h) for p in params["peep"])
    c = jax.nn.sigmoid(zf + p_f * carry["c"]) * carry["c"]
    c = c + jax.nn.sigmoid(zi + p_i * carry["c"]) * jnp.tanh(zg)
    h = jax.nn.sigmoid(zo + p_o * c) * jnp.tanh(c)
    return {"h": h, "c": c}, h


def _project(params, xs):
    z = xs @ params["w"]
    return z + _row(params["b"], z)


def _step(params, carry, x):
    return _projected_step(params, carry, _project(params, x), None)


PEEPHOLE = rnnjax.Cell(
    init=_init,
    initial_carry=_initial_carry,
    step=_step,
    input_size=lambda params: params["w"].shape[0],
    output=lambda carry: carry["h"],
)
# The same cell offering the projection capability: hoisting and recurrent dropout.
PEEPHOLE_PROJECTED = PEEPHOLE._replace(projection=rnnjax.Projection(_project, _projected_step))


def reference_step(p, state, x):
    """Float64, from the equations above."""
    h, c = state
    z = x @ p["w"] + h @ p["u"] + p["b"]
    sig = reference.sigmoid
    i = sig(z[..., :HIDDEN] + p["peep"][0] * c)
    f = sig(z[..., HIDDEN : 2 * HIDDEN] + p["peep"][1] * c)
    c = f * c + i * np.tanh(z[..., 2 * HIDDEN : 3 * HIDDEN])
    o = sig(z[..., 3 * HIDDEN :] + p["peep"][2] * c)
    return o * np.tanh(c), c


def inputs(key=1):
    return jax.random.normal(jax.random.key(key), (BATCH, TIME, FEATURES))


def random_state(key=2):
    h, c = jax.random.normal(jax.random.key(key), (2, BATCH, HIDDEN))
    return {"h": h, "c": c}


def as_lstm(params):
    """The params of ``rnnjax.lstm`` that compute what the cell computes without peepholes."""
    return rnnjax.LSTMParams(params["w"], params["u"], params["b"])


def no_peepholes(params):
    return {**params, "peep": jnp.zeros_like(params["peep"])}


# --- rnnjax.rnn ------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", [PEEPHOLE, PEEPHOLE_PROJECTED], ids=["plain", "projection"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("remat", [False, True], ids=["", "remat"])
def test_rnn_matches_float64_loop(cell, reverse, remat):
    params, xs, carry = cell.init(jax.random.key(0), FEATURES), inputs(), random_state()
    final, ys = rnnjax.rnn(
        cell,
        params,
        xs,
        initial_carry=carry,
        seq_lengths=LENGTHS,
        reverse=reverse,
        remat=remat,
        hoist_projection=cell.projection is not None,
    )
    state = tuple(np.asarray(carry[k], np.float64) for k in ("h", "c"))
    want_final, want_ys = reference.run(reference_step, params, xs, state, LENGTHS, reverse)
    tight(ys, want_ys)
    tight(final["h"], want_final[0])
    tight(final["c"], want_final[1])
    assert cell.output(final) is final["h"]


def test_rnn_resets_and_jit_vmap():
    params, xs = PEEPHOLE.init(jax.random.key(0), FEATURES), inputs()
    resets = jnp.zeros((BATCH, TIME), bool).at[:, 3].set(True)
    run = jax.jit(lambda p, x, r: rnnjax.rnn(PEEPHOLE, p, x, resets=r)[1])
    ys = run(params, xs, resets)
    tight(ys[:, 3:], run(params, xs[:, 3:], resets[:, 3:]))  # after a reset: afresh
    per_example = jax.vmap(run, in_axes=(None, 0, 0))(params, xs[:, None], resets[:, None])
    tight(per_example[:, 0], ys)


def test_jit_grad_train_step_matches_a_python_loop():
    params, xs = PEEPHOLE.init(jax.random.key(0), FEATURES), inputs()
    targets = jnp.linspace(-1, 1, BATCH * HIDDEN).reshape(BATCH, HIDDEN)

    def loss(params, batch, key):
        final, _ = rnnjax.rnn(PEEPHOLE, params, batch, seq_lengths=LENGTHS)
        return jnp.mean((final["h"] - targets) ** 2)

    def loop_loss(params, batch):
        finals = []
        for b in range(BATCH):
            carry = PEEPHOLE.initial_carry(params, ())
            for t in range(int(LENGTHS[b])):
                carry, _ = PEEPHOLE.step(params, carry, batch[b, t])
            finals.append(carry["h"])
        return jnp.mean((jnp.stack(finals) - targets) ** 2)

    jax.tree.map(tight, jax.grad(loss)(params, xs, None), jax.grad(loop_loss)(params, xs))
    trainer = rnnjax.training.make_trainer(loss, optax.sgd(0.1), clip_norm=None)
    state, metrics = trainer.step(trainer.init(params, jax.random.key(0)), xs)
    tight(metrics["loss"], loop_loss(params, xs))
    assert float(trainer.evaluate(state.params, xs)) < float(metrics["loss"])


# --- Layers ----------------------------------------------------------------------------------


def test_layer_dropout_equals_the_lstm_without_peepholes():
    params = no_peepholes(PEEPHOLE.init(jax.random.key(0), FEATURES))
    options = dict(dropout=0.3, recurrent_dropout=0.4)
    custom = rnnjax.layer(PEEPHOLE_PROJECTED, **options)
    builtin = rnnjax.layer(rnnjax.lstm(HIDDEN), **options)
    run = dict(seq_lengths=LENGTHS, key=jax.random.key(3), deterministic=False)
    (final, ys), (want_final, want_ys) = (
        custom.apply(params, inputs(), **run),
        builtin.apply(as_lstm(params), inputs(), **run),
    )
    tight(ys, want_ys)
    tight(final["c"], want_final.c)
    dropped_nothing = custom.apply(params, inputs(), seq_lengths=LENGTHS)[1]
    assert not np.allclose(ys, dropped_nothing)


def test_layer_without_the_projection_capability():
    with pytest.raises(ValueError, match="recurrent_dropout needs a cell with a recurrent matmul"):
        rnnjax.layer(PEEPHOLE, recurrent_dropout=0.1)
    params = PEEPHOLE.init(jax.random.key(0), FEATURES)
    with pytest.raises(ValueError, match="hoist_projection=True needs a cell with the `proj"):
        rnnjax.rnn(PEEPHOLE, params, inputs(), hoist_projection=True)
    shape_not_size = PEEPHOLE._replace(input_size=lambda params: params["w"].shape)
    with pytest.raises(TypeError, match=r"input_size\(params\) must return an int .*; got tuple"):
        rnnjax.rnn(shape_not_size, params, inputs())
    layer = rnnjax.layer(PEEPHOLE, dropout=0.5)  # input dropout needs nothing of the cell
    _, ys = layer.apply(params, inputs(), key=jax.random.key(1), deterministic=False)
    assert ys.shape == (BATCH, TIME, HIDDEN)


def test_bidirectional_and_stack_match_float64_loops():
    bi = rnnjax.bidirectional(rnnjax.layer(PEEPHOLE))
    net = rnnjax.stack(bi, rnnjax.layer(PEEPHOLE), residual=False)
    params = net.init(jax.random.key(0), FEATURES)
    (bi_final, top_final), ys = net.apply(params, inputs(), seq_lengths=LENGTHS)

    zeros = (np.zeros((BATCH, HIDDEN)),) * 2
    xs = np.asarray(inputs(), np.float64)
    _, fwd = reference.run(reference_step, params[0].forward, xs, zeros, LENGTHS)
    bwd_final, bwd = reference.run(reference_step, params[0].backward, xs, zeros, LENGTHS, True)
    between = np.concatenate([fwd, bwd], axis=-1)
    _, want = reference.run(reference_step, params[1], between, zeros, LENGTHS)
    tight(ys, want)
    tight(bi_final[1]["h"], bwd_final[0])
    assert top_final["c"].shape == (BATCH, HIDDEN)


def test_tbptt_forward_is_one_pass():
    layer = rnnjax.layer(PEEPHOLE)
    params = layer.init(jax.random.key(0), FEATURES)
    want = layer.apply(params, inputs(), seq_lengths=LENGTHS)
    got = rnnjax.tbptt(layer, params, inputs(), chunk_length=4, seq_lengths=LENGTHS)
    jax.tree.map(tight, got, want)


def test_a_builtin_cell_names_params_that_are_not_its_own():
    gru_params = rnnjax.gru(HIDDEN).init(jax.random.key(0), FEATURES)
    with pytest.raises(
        ValueError,
        match=r"rnnjax.lstm\(5\): params must be LSTMParams\(kernel=\[input_size, 20\],"
        r" recurrent_kernel=\(5, 20\), bias=\(20,\)\); got GRUParams with kernel=\(4, 15\),"
        r" recurrent_kernel=\(5, 15\), bias=\(15,\)",
    ):
        rnnjax.rnn(rnnjax.lstm(HIDDEN), gru_params, inputs())
    reset_before = rnnjax.gru(HIDDEN, reset_after=False)  # one bias: recurrent_bias is None
    with pytest.raises(ValueError, match=r"gru\(5, reset_after=False\): params must be GRUParams"):
        rnnjax.rnn(reset_before, gru_params, inputs())


def test_a_carry_with_more_trailing_axes_pads_and_resets_like_any_other():
    # The LSTM with its state as one array [*batch, 2, hidden]: rows h and c.
    lstm = rnnjax.lstm(HIDDEN)

    def step(params, carry, x):
        state, y = lstm.step(params, rnnjax.LSTMState(carry[..., 0, :], carry[..., 1, :]), x)
        return jnp.stack([state.h, state.c], axis=-2), y

    def initial_carry(params, batch_shape, dtype=None):
        state = lstm.initial_carry(params, batch_shape, dtype)
        return jnp.stack([state.h, state.c], axis=-2)

    stacked = rnnjax.Cell(lstm.init, initial_carry, step, lstm.input_size, lambda c: c[..., 0, :])
    params = lstm.init(jax.random.key(0), FEATURES)
    resets = jnp.zeros((BATCH, TIME), bool).at[:, 2].set(True)
    run = dict(seq_lengths=LENGTHS, resets=resets, reverse=True)
    final, ys = rnnjax.rnn(stacked, params, inputs(), **run)
    want_final, want_ys = rnnjax.rnn(lstm, params, inputs(), **run)
    tight(ys, want_ys)
    tight(final[..., 1, :], want_final.c)
