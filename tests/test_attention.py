"""``rnnjax.attention``: against a float64 NumPy loop written from its equations, against a
Python loop over its own step, masking past ``memory_lengths`` (garbage there changes nothing,
gradients included), gradients, and the named errors.

One set of shapes throughout, so each kind compiles a few functions only.
"""

import functools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

import rnnjax
from tests import reference

BATCH, SOURCE, FEATURES, TIME, INPUT, HIDDEN = 3, 5, 4, 4, 3, 6
LENGTHS = np.array([5, 2, 0])  # full, partial, empty source
KINDS = ["bahdanau", "luong"]
tight = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    memory = rng.normal(size=(BATCH, SOURCE, FEATURES)).astype(np.float32)
    xs = rng.normal(size=(BATCH, TIME, INPUT)).astype(np.float32)
    return memory, xs


@functools.cache
def _params(kind, attention_size=None):
    memory, _ = _data()
    att = rnnjax.attention(rnnjax.lstm(HIDDEN), memory, kind=kind, attention_size=attention_size)
    return att.init(jax.random.key(1), INPUT)


# --- A float64 NumPy reference of the equations ----------------------------------------------


def _reference(kind, params, memory, lengths, xs):
    """Per example: input feeding, the LSTM step, scores, masked softmax, context, output."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    inner = {"kernel": p.cell.kernel, "recurrent_kernel": p.cell.recurrent_kernel}
    inner["bias"] = p.cell.bias
    size = p.output_kernel.shape[1]
    ys = np.zeros((BATCH, TIME, size))
    weights = np.zeros((BATCH, TIME, SOURCE))
    for b in range(BATCH):
        m = np.asarray(memory[b, : lengths[b]], np.float64)  # the valid part only
        h = c = np.zeros(HIDDEN)
        attended = np.zeros(size)
        for t in range(TIME):
            x = np.concatenate([np.asarray(xs[b, t], np.float64), attended])
            h, c = reference.lstm_step(inner, (h, c), x)
            if kind == "bahdanau":
                e = np.tanh(h @ p.query_kernel + m @ p.memory_kernel) @ p.score_vector
            else:
                e = m @ (h @ p.query_kernel)
            a = np.exp(e - e.max()) / np.exp(e - e.max()).sum() if len(m) else np.zeros(0)
            context = a @ m if len(m) else np.zeros(FEATURES)
            attended = np.tanh(np.concatenate([context, h]) @ p.output_kernel)
            ys[b, t] = attended
            weights[b, t, : lengths[b]] = a
    return ys, weights


def _scan_step(att, params, carry, xs):
    """``lax.scan`` over ``att.step``, collecting the outputs and the weights."""

    def body(carry, x):
        carry, y = att.step(params, carry, x)
        return carry, (y, carry.weights)

    return jax.lax.scan(body, carry, jnp.moveaxis(xs, 1, 0))


@pytest.mark.parametrize("kind", KINDS)
def test_matches_numpy_reference_and_step_loop(kind):
    memory, xs = _data()
    params = _params(kind, attention_size=5)
    att = rnnjax.attention(
        rnnjax.lstm(HIDDEN), memory, jnp.asarray(LENGTHS), kind=kind, attention_size=5
    )
    expected_ys, expected_weights = _reference(kind, params, memory, LENGTHS, xs)

    carry, ys = jax.jit(lambda p, xs: rnnjax.rnn(att, p, xs))(params, xs)
    tight(ys, expected_ys)
    tight(carry.weights, expected_weights[:, -1])
    tight(carry.attention, expected_ys[:, -1])

    # A Python loop over att.step (eager), and lax.scan over it collecting the weights.
    loop_carry, step = att.initial_carry(params, BATCH), jax.jit(att.step)
    for t in range(TIME):
        loop_carry, y = step(params, loop_carry, xs[:, t])
        tight(y, ys[:, t])
    jax.tree.map(tight, loop_carry, carry)
    _, (scan_ys, scan_weights) = _scan_step(att, params, att.initial_carry(params, BATCH), xs)
    tight(jnp.moveaxis(scan_ys, 0, 1), expected_ys)
    tight(jnp.moveaxis(scan_weights, 0, 1), expected_weights)


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_and_are_exactly_zero_past_the_length(kind):
    memory, xs = _data()
    params = _params(kind)
    att = rnnjax.attention(rnnjax.lstm(HIDDEN), memory, jnp.asarray(LENGTHS), kind=kind)
    _, (ys, weights) = _scan_step(att, params, att.initial_carry(params, BATCH), xs)
    weights = np.asarray(jnp.moveaxis(weights, 0, 1))  # [batch, time, source]
    for b, length in enumerate(LENGTHS):
        assert (weights[b, :, length:] == 0).all()
        expected_sum = 1.0 if length else 0.0  # a length-0 source attends to nothing
        np.testing.assert_allclose(weights[b].sum(-1), expected_sum, rtol=1e-6)
    assert np.isfinite(np.asarray(ys)).all()
    assert (weights >= 0).all()


@functools.cache
def _loss_and_grads(kind):
    """Loss and its gradients (params, memory) of teacher forcing with memory_lengths."""

    def loss(params, memory, lengths, xs):
        att = rnnjax.attention(rnnjax.lstm(HIDDEN), memory, lengths, kind=kind)
        carry, ys = rnnjax.rnn(att, params, xs)
        return jnp.sum(ys**2) + jnp.sum(carry.weights**2)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


@pytest.mark.parametrize("kind", KINDS)
@given(
    lengths=hnp.arrays(np.int32, (BATCH,), elements=st.integers(0, SOURCE)),
    garbage=hnp.arrays(
        np.float32,
        (BATCH, SOURCE, FEATURES),
        elements=st.sampled_from([np.nan, np.inf, -1e30, 3.0]),
    ),
)
def test_padding_never_changes_outputs_or_gradients(kind, lengths, garbage):
    memory, xs = _data()
    params = _params(kind)
    padded = np.where(np.arange(SOURCE)[None, :, None] < lengths[:, None, None], memory, garbage)
    clean = np.where(np.arange(SOURCE)[None, :, None] < lengths[:, None, None], memory, 0)
    value, (g_params, g_memory) = _loss_and_grads(kind)(params, clean, lengths, xs)
    value_padded, (g_params_padded, g_memory_padded) = _loss_and_grads(kind)(
        params, padded, lengths, xs
    )
    assert value == value_padded
    jax.tree.map(np.testing.assert_array_equal, g_params_padded, g_params)
    np.testing.assert_array_equal(g_memory_padded, g_memory)
    assert np.isfinite(value)


@pytest.mark.parametrize("kind", KINDS)
def test_check_grads(kind):
    with jax.enable_x64(True):
        memory, xs = (a.astype(np.float64) for a in _data())
        params = jax.tree.map(lambda a: a.astype(jnp.float64), _params(kind))

        def loss(params, memory, xs):
            att = rnnjax.attention(rnnjax.lstm(HIDDEN), memory, jnp.asarray(LENGTHS), kind=kind)
            return rnnjax.rnn(att, params, xs[:, :2])[1]

        check_grads(jax.jit(loss), (params, memory, xs), order=1, modes=["rev"], eps=1e-4)


def test_vmap_equals_batch_and_decoder_starts_from_encoder_carry():
    memory, xs = _data()
    params = _params("luong")
    encoder_carry = rnnjax.LSTMState(*(jnp.full((BATCH, HIDDEN), v) for v in (0.3, -0.2)))

    def run(memory, length, xs, encoder_carry):
        att = rnnjax.attention(rnnjax.lstm(HIDDEN), memory, length, kind="luong")
        carry = att.initial_carry(params, memory.shape[:-2])._replace(cell=encoder_carry)
        return rnnjax.rnn(att, params, xs, initial_carry=carry)[1]

    batched = run(memory, jnp.asarray(LENGTHS), xs, encoder_carry)
    mapped = jax.vmap(run)(memory, jnp.asarray(LENGTHS), xs, encoder_carry)
    tight(mapped, batched)
    fresh = run(memory, jnp.asarray(LENGTHS), xs, jax.tree.map(jnp.zeros_like, encoder_carry))
    assert not np.allclose(fresh, batched)  # the encoder's carry reached the decoder


# --- Errors, named at trace time ---------------------------------------------------------------


def test_errors():
    memory, xs = _data()
    cell = rnnjax.lstm(HIDDEN)
    with pytest.raises(
        ValueError, match=r"rnnjax.attention: kind must be one of .*'bahdanau'.*got 'dot'"
    ):
        rnnjax.attention(cell, memory, kind="dot")
    with pytest.raises(
        ValueError,
        match=r"rnnjax.attention: memory must have shape \[\*batch, source_time, features\]"
        r" \(rank >= 2\); got \(4,\)",
    ):
        rnnjax.attention(cell, memory[0, 0])
    with pytest.raises(
        TypeError, match=r"rnnjax.attention: memory must be floating point; got int32\[3, 5, 4\]"
    ):
        rnnjax.attention(cell, memory.astype(np.int32))
    with pytest.raises(
        ValueError,
        match=r"rnnjax.attention: memory_lengths must have shape \(3,\)"
        r" \(the batch shape of memory \(3, 5, 4\)\); got \(2,\)",
    ):
        rnnjax.attention(cell, memory, jnp.array([1, 2]))
    with pytest.raises(
        TypeError, match=r"rnnjax.attention: memory_lengths must have an integer dtype; got float32"
    ):
        rnnjax.attention(cell, memory, jnp.ones(3))
    with pytest.raises(
        ValueError,
        match=r"rnnjax.attention: memory_lengths must lie in \[0, 5\].*got values from 0 to 6",
    ):
        rnnjax.attention(cell, memory, jnp.array([6, 0, 1]))
    with pytest.raises(
        ValueError, match=r"rnnjax.attention: attention_size must be an int >= 1; got 0"
    ):
        rnnjax.attention(cell, memory, attention_size=0)

    att = rnnjax.attention(cell, memory, kind="luong")
    params = att.init(jax.random.key(0), INPUT)
    assert att.input_size(params) == INPUT
    with pytest.raises(
        ValueError,
        match=r"rnnjax.attention\('luong'\): the batch shape must be memory's, \(3,\)"
        r" \(memory \(3, 5, 4\)\); got \(2,\)",
    ):
        rnnjax.rnn(att, params, xs[:2])
    with pytest.raises(ValueError, match=r"rnnjax.rnn: xs must have shape \[\*batch, time, 3\]"):
        rnnjax.rnn(att, params, xs[..., :2])
    with pytest.raises(
        ValueError,
        match=r"rnnjax.attention\('luong'\).step: x must have shape \(3, 3\)"
        r" \(\[\*memory batch, input_size\]\); got \(3, 2\)",
    ):
        att.step(params, att.initial_carry(params, BATCH), xs[:, 0, :2])
    with pytest.raises(
        ValueError, match=r"rnnjax.attention\('luong'\).step: carry must have shape"
    ):
        att.step(
            params, att.initial_carry(params, BATCH)._replace(weights=jnp.zeros((3, 4))), xs[:, 0]
        )
    with pytest.raises(
        TypeError, match=r"rnnjax.attention\('luong'\).step: carry.cell must be rnnjax.LSTMState"
    ):
        carry = att.initial_carry(params, BATCH)
        att.step(params, carry._replace(cell=tuple(carry.cell)), xs[:, 0])
    with pytest.raises(TypeError) as refused:  # what rnnjax expects, no other library's order
        rnnjax.rnn(att, params, xs, initial_carry=tuple(att.initial_carry(params, BATCH)))
    assert str(refused.value) == (
        "rnnjax.rnn: initial_carry must be rnnjax.AttentionState(cell=..., attention=...,"
        " weights=...), not a plain tuple, whose order rnnjax does not guess: build it with"
        " AttentionState's field names"
    )
    bahdanau_params = _params("bahdanau")
    with pytest.raises(
        ValueError,
        match=r"rnnjax.attention\('luong'\): params must be AttentionParams with .*;"
        r" got .*'memory_kernel': \(4, 6\)",
    ):
        rnnjax.rnn(att, bahdanau_params, xs)
    with pytest.raises(
        TypeError,
        match=r"rnnjax.attention\('luong'\): params must be rnnjax.AttentionParams; got LSTMParams",
    ):
        att.input_size(params.cell)
