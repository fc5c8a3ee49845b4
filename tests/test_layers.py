"""Layers: against float64 references and hand-composed layers, under padding, dropout, TBPTT."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.extend import core as jex_core

import rnnjax
from rnnjax._src.cells import derived
from tests.cells_under_test import (
    CASE_IDS,
    CASES,
    HIDDEN,
    carry_arrays,
    case_named,
    random_carry,
    random_params,
    reference_run,
)

BATCH, TIME, FEATURES = 3, 7, 4
LENGTHS = (7, 0, 4)
LSTM_CASE, GRU_CASE = case_named("lstm"), case_named("gru-reset_after")
# where all the cases would only cost time
SOME_CASES = [case_named("simple_rnn-tanh"), LSTM_CASE, GRU_CASE]
SOME_IDS = [case.name for case in SOME_CASES]

tight = functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6)


def inputs(key=0, batch=BATCH, time=TIME, features=FEATURES):
    return jax.random.normal(jax.random.key(key), (batch, time, features))


def assert_close(actual, expected, tol=2e-5):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), e, rtol=tol, atol=tol)


def identity_layer(size, **options):
    """A simple-RNN layer with ``ys == xs`` (kernel I, no recurrence): shows input masks."""
    layer = rnnjax.layer(rnnjax.simple_rnn(size, lambda z: z), **options)
    eye, zeros = jnp.eye(size), jnp.zeros((size, size))
    return layer, rnnjax.SimpleRNNParams(eye, zeros, jnp.zeros(size))


# --- layer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SOME_CASES, ids=SOME_IDS)
def test_layer_is_rnn(case, reverse=True):
    params = random_params(case, jax.random.key(1), FEATURES)
    carry = random_carry(case, jax.random.key(2), (BATCH,))
    lengths = jnp.array(LENGTHS)
    layer = rnnjax.layer(case.cell, reverse=reverse, dropout=0.5, recurrent_dropout=0.5)
    got = layer.apply(params, inputs(), seq_lengths=lengths, initial_carry=carry)
    want = rnnjax.rnn(
        case.cell, params, inputs(), seq_lengths=lengths, initial_carry=carry, reverse=reverse
    )
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_layer_init_is_the_cells():
    layer = rnnjax.layer(rnnjax.lstm(HIDDEN))
    jax.tree.map(
        np.testing.assert_array_equal,
        layer.init(jax.random.key(0), FEATURES),
        rnnjax.lstm(HIDDEN).init(jax.random.key(0), FEATURES),
    )


# --- bidirectional -------------------------------------------------------------------------


def merged(mode, forward, backward):
    return {
        "concat": lambda: np.concatenate([forward, backward], -1),
        "sum": lambda: forward + backward,
        "mul": lambda: forward * backward,
        "ave": lambda: (forward + backward) / 2,
        "none": lambda: (forward, backward),
    }[mode]()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bidirectional_under_padding_matches_float64_per_example_loop(case):
    keys = jax.random.split(jax.random.key(3), 4)
    params = rnnjax.BidirectionalParams(
        random_params(case, keys[0], FEATURES), random_params(case, keys[1], FEATURES)
    )
    carries = (random_carry(case, keys[2], (BATCH,)), random_carry(case, keys[3], (BATCH,)))
    xs = inputs().at[2, LENGTHS[2] :].set(jnp.nan)  # padding never reaches a result
    want_f = reference_run(case, params.forward, xs, carries[0], LENGTHS, reverse=False)
    want_b = reference_run(case, params.backward, xs, carries[1], LENGTHS, reverse=True)
    bi = rnnjax.bidirectional(rnnjax.layer(case.cell), merge="none")
    (final_f, final_b), ys = bi.apply(
        params, xs, seq_lengths=jnp.array(LENGTHS), initial_carry=carries
    )
    assert_close(ys, (want_f[1], want_b[1]))
    assert_close(carry_arrays(final_f), want_f[0])
    assert_close(carry_arrays(final_b), want_b[0])


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
def test_bidirectional_merge_modes(mode):
    forward, backward = rnnjax.layer(rnnjax.lstm(HIDDEN)), rnnjax.layer(rnnjax.gru(HIDDEN))
    params = rnnjax.bidirectional(forward, backward).init(jax.random.key(0), FEATURES)
    lengths = jnp.array(LENGTHS)
    _, pair = rnnjax.bidirectional(forward, backward, merge="none").apply(
        params, inputs(), seq_lengths=lengths
    )
    _, ys = rnnjax.bidirectional(forward, backward, merge=mode).apply(
        params, inputs(), seq_lengths=lengths
    )
    tight(ys, merged(mode, *(np.asarray(y) for y in pair)))


def test_bidirectional_default_backward_is_reversed_with_its_own_params():
    bi = rnnjax.bidirectional(rnnjax.layer(rnnjax.gru(HIDDEN)), merge="none")
    params = bi.init(jax.random.key(0), FEATURES)
    assert not np.array_equal(params.forward.kernel, params.backward.kernel)
    lengths = jnp.array(LENGTHS)
    _, (ys_f, ys_b) = bi.apply(params, inputs(), seq_lengths=lengths)
    cell = rnnjax.gru(HIDDEN)
    tight(ys_f, rnnjax.rnn(cell, params.forward, inputs(), seq_lengths=lengths)[1])
    want_b = rnnjax.rnn(cell, params.backward, inputs(), seq_lengths=lengths, reverse=True)[1]
    tight(ys_b, want_b)


def test_bidirectional_with_an_explicit_backward_layer_of_another_size():
    bi = rnnjax.bidirectional(
        rnnjax.layer(rnnjax.lstm(3)), rnnjax.layer(rnnjax.gru(2), reverse=True)
    )
    params = bi.init(jax.random.key(0), FEATURES)
    (carry_f, carry_b), ys = bi.apply(params, inputs())
    assert ys.shape == (BATCH, TIME, 5)
    assert carry_f.c.shape == (BATCH, 3) and carry_b.shape == (BATCH, 2)


# --- stack ---------------------------------------------------------------------------------


def three_layers():
    return (
        rnnjax.layer(rnnjax.lstm(6)),
        rnnjax.bidirectional(rnnjax.layer(rnnjax.gru(3))),
        rnnjax.layer(rnnjax.simple_rnn(6), reverse=True),
    )


def test_stack_finds_each_input_size_and_equals_layers_composed_by_hand():
    layers = three_layers()
    net = rnnjax.stack(*layers, dropout=0.3)
    params = net.init(jax.random.key(0), FEATURES)
    assert params[0].kernel.shape == (FEATURES, 4 * 6)
    assert params[1].forward.kernel.shape == (6, 3 * 3)
    assert params[2].kernel.shape == (6, 6)  # the bidirectional concat gives 2 * 3
    lengths = jnp.array(LENGTHS)
    carries = (None, (jnp.ones((BATCH, 3)), None), jnp.ones((BATCH, 6)))
    finals, ys = jax.jit(functools.partial(net.apply, seq_lengths=lengths))(
        params, inputs(), initial_carry=carries
    )
    hand, hand_finals = inputs(), []
    for layer, p, c in zip(layers, params, carries, strict=True):
        carry, hand = layer.apply(p, hand, seq_lengths=lengths, initial_carry=c)
        hand_finals.append(carry)
    jax.tree.map(tight, (finals, ys), (tuple(hand_finals), hand))
    assert len(finals) == 3


def test_stack_residual_adds_each_later_layers_input():
    first, second = rnnjax.layer(rnnjax.gru(5)), rnnjax.layer(rnnjax.lstm(5))
    net = rnnjax.stack(first, second, residual=True)
    params = net.init(jax.random.key(0), FEATURES)
    _, ys = net.apply(params, inputs(), seq_lengths=jnp.array(LENGTHS))
    _, ys_1 = first.apply(params[0], inputs(), seq_lengths=jnp.array(LENGTHS))
    _, ys_2 = second.apply(params[1], ys_1, seq_lengths=jnp.array(LENGTHS))
    tight(ys, ys_2 + ys_1)
    assert not jnp.any(ys[1]) and not jnp.any(ys[2, 4:])  # padding stays zero


def test_stack_dropout_between_layers_only():
    layer, params = identity_layer(FEATURES)
    xs = jnp.ones((BATCH, TIME, FEATURES))
    key = jax.random.key(7)
    single = rnnjax.stack(layer, dropout=0.5)
    _, ys = single.apply((params,), xs, key=key, deterministic=False)
    np.testing.assert_array_equal(ys, xs)  # never after the last layer
    double = rnnjax.stack(layer, layer, dropout=0.5)
    _, ys = double.apply((params, params), xs, key=key, deterministic=False)
    assert set(np.unique(np.asarray(ys)).tolist()) == {0.0, 2.0}
    np.testing.assert_array_equal(ys, jnp.broadcast_to(ys[:, :1], ys.shape))  # fixed over time
    _, ys = double.apply((params, params), xs, key=key, deterministic=True)
    np.testing.assert_array_equal(ys, xs)


def test_stack_flip_reverses_every_layer():
    net = rnnjax.stack(rnnjax.layer(rnnjax.gru(3)), rnnjax.layer(rnnjax.gru(3)))
    params = net.init(jax.random.key(0), FEATURES)
    _, ys = net.flip().apply(params, inputs())
    _, ys_1 = rnnjax.layer(rnnjax.gru(3), reverse=True).apply(params[0], inputs())
    _, ys_2 = rnnjax.layer(rnnjax.gru(3), reverse=True).apply(params[1], ys_1)
    tight(ys, ys_2)
    assert rnnjax.stack(rnnjax.bidirectional(rnnjax.layer(rnnjax.gru(3)))).flip is None


# --- dropout -------------------------------------------------------------------------------


def test_input_dropout_mask_is_fixed_over_time_and_scaled():
    layer, params = identity_layer(FEATURES, dropout=0.25)
    xs = jnp.ones((BATCH, TIME, FEATURES))
    _, ys = layer.apply(params, xs, key=jax.random.key(0), deterministic=False)
    np.testing.assert_array_equal(ys, jnp.broadcast_to(ys[:, :1], ys.shape))
    assert set(np.unique(np.asarray(ys)).tolist()) <= {0.0, float(np.float32(1 / 0.75))}


def test_recurrent_dropout_mask_is_fixed_over_time():
    # h_t = (h_{t-1} * mask) @ I with h_0 = 1: h_t = mask ** t, one mask for every step.
    cell = rnnjax.simple_rnn(FEATURES, lambda z: z)
    layer = rnnjax.layer(cell, recurrent_dropout=0.5)
    params = rnnjax.SimpleRNNParams(
        jnp.zeros((FEATURES, FEATURES)), jnp.eye(FEATURES), jnp.zeros(FEATURES)
    )
    ones = jnp.ones((BATCH, FEATURES))
    _, ys = layer.apply(
        params, inputs(), initial_carry=ones, key=jax.random.key(0), deterministic=False
    )
    mask = ys[:, 0]
    assert set(np.unique(np.asarray(mask)).tolist()) == {0.0, 2.0}
    powers = mask[:, None, :] ** jnp.arange(1, TIME + 1)[None, :, None]
    tight(ys, powers)


RECURRENT = [case for case in CASES if case.cell.linear_scan is None]  # minGRU: no matmul of h


@pytest.mark.parametrize("case", RECURRENT, ids=[case.name for case in RECURRENT])
def test_recurrent_dropout_touches_only_h_at_the_recurrent_matmul(case):
    # With a zero recurrent kernel h never enters the step's matmuls, so dropping h must
    # change nothing: not the LSTM's c, not the GRU's z * h term (as in Keras).
    params = random_params(case, jax.random.key(1), FEATURES)
    if isinstance(params, rnnjax.DiagonalParams):  # the diagonal cells' recurrent vector
        params = params._replace(recurrent_weight=jnp.zeros_like(params.recurrent_weight))
    else:
        params = params._replace(recurrent_kernel=jnp.zeros_like(params.recurrent_kernel))
    carry = random_carry(case, jax.random.key(2), (BATCH,))
    layer = rnnjax.layer(case.cell, recurrent_dropout=0.9)
    dropped = layer.apply(
        params, inputs(), initial_carry=carry, key=jax.random.key(0), deterministic=False
    )
    jax.tree.map(tight, dropped, layer.apply(params, inputs(), initial_carry=carry))


def test_dropout_keep_rate_over_many_draws():
    layer, params = identity_layer(8, dropout=0.3)
    xs = jnp.ones((4000, 1, 8))
    _, ys = layer.apply(params, xs, key=jax.random.key(0), deterministic=False)
    kept = float(jnp.mean(ys != 0))
    assert abs(kept - 0.7) < 0.01  # 32000 draws: about 4.5 standard deviations
    np.testing.assert_allclose(float(jnp.mean(ys)), 1.0, atol=0.02)  # inverted scaling


@pytest.mark.parametrize("case", SOME_CASES, ids=SOME_IDS)
def test_dropout_reproducible_and_absent_when_deterministic(case):
    params = random_params(case, jax.random.key(1), FEATURES)
    layer = rnnjax.layer(case.cell, dropout=0.4, recurrent_dropout=0.4)
    run = jax.jit(layer.apply, static_argnames="deterministic")
    plain = rnnjax.layer(case.cell).apply(params, inputs())
    jax.tree.map(tight, run(params, inputs(), key=jax.random.key(0)), plain)
    first = run(params, inputs(), key=jax.random.key(0), deterministic=False)
    again = run(params, inputs(), key=jax.random.key(0), deterministic=False)
    other = run(params, inputs(), key=jax.random.key(1), deterministic=False)
    jax.tree.map(np.testing.assert_array_equal, first, again)
    assert not np.allclose(first[1], other[1]) and not np.allclose(first[1], plain[1])


# --- segmented checkpointing ---------------------------------------------------------------


@functools.cache
def _segmented_value_and_grads(case_name, reverse, remat, segment_length):
    cell = case_named(case_name).cell
    layer = rnnjax.layer(cell, reverse=reverse, remat=remat, segment_length=segment_length)

    def loss(params, xs, carry, lengths):
        final, ys = layer.apply(params, xs, initial_carry=carry, seq_lengths=lengths)
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(a)) for a in carry_arrays(final))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


@pytest.mark.parametrize(
    "case_name, reverse, lengths, segment_length",
    [
        ("lstm", False, (10, 0, 4), 3),  # 3 segments scanned, then a remainder of 1
        ("lstm", True, (10, 0, 4), None),  # sqrt: segments of 4, a remainder of 2
        ("gru-reset_after", True, None, 5),  # two segments, no remainder
        ("gru-reset_after", False, (10, 0, 4), 12),  # one segment longer than the sequence
    ],
    ids=["lstm-forward-3", "lstm-reverse-sqrt", "gru-reverse-5", "gru-forward-12"],
)
def test_segmented_checkpointing_equals_plain_autodiff(case_name, reverse, lengths, segment_length):
    case = case_named(case_name)
    params = random_params(case, jax.random.key(1), FEATURES)
    carry = random_carry(case, jax.random.key(2), (BATCH,))
    xs, seq_lengths = inputs(time=10), None if lengths is None else jnp.array(lengths)
    plain = _segmented_value_and_grads(case_name, reverse, False, None)
    segmented = _segmented_value_and_grads(case_name, reverse, "segments", segment_length)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
        segmented(params, xs, carry, seq_lengths),
        plain(params, xs, carry, seq_lengths),
    )


def test_segmented_checkpointing_keeps_fewer_bytes():
    cell = rnnjax.lstm(32)
    params = cell.init(jax.random.key(0), 8)
    xs = jnp.zeros((4, 1024, 8))

    def temp_bytes(remat):
        layer = rnnjax.layer(cell, remat=remat)
        loss = lambda p: jnp.sum(layer.apply(p, xs)[1])  # noqa: E731
        compiled = jax.jit(jax.grad(loss)).lower(params).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes("segments") < 0.5 * temp_bytes(True)


def test_segmented_carry_defaults_to_zeros():
    layer = rnnjax.layer(rnnjax.lstm(HIDDEN), remat="segments", segment_length=3)
    params = layer.init(jax.random.key(0), FEATURES)
    got = layer.apply(params, inputs(), seq_lengths=jnp.array(LENGTHS))
    want = rnnjax.layer(rnnjax.lstm(HIDDEN)).apply(params, inputs(), seq_lengths=jnp.array(LENGTHS))
    jax.tree.map(tight, got, want)


# --- truncated BPTT and resets -------------------------------------------------------------


def chunk_loop(layer, params, xs, chunk, lengths):
    """TBPTT written by hand: a Python loop over chunks, stop_gradient between them."""
    carry, ys = None, []
    for start in range(0, xs.shape[1], chunk):
        if carry is not None:
            carry = jax.lax.stop_gradient(carry)
        part = xs[:, start : start + chunk]
        local = jnp.clip(lengths - start, 0, part.shape[1])
        carry, y = layer.apply(params, part, initial_carry=carry, seq_lengths=local)
        ys.append(y)
    return carry, jnp.concatenate(ys, axis=1)


@pytest.mark.parametrize("chunk", [3, 4], ids=["remainder", "divides"])
def test_tbptt_forward_is_one_pass_and_gradients_are_the_chunk_loops(chunk):
    net = rnnjax.layer(rnnjax.lstm(4))
    params = net.init(jax.random.key(0), FEATURES)
    xs, lengths = inputs(time=8), jnp.array((8, 2, 7))

    def value_and_grads(run):
        def loss(params):
            final, ys = run(params)
            value = jnp.sum(ys * jnp.sin(ys)) + jnp.sum(final.c)
            return value, (final, ys)

        return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

    (_, tbptt_out), tbptt_grads = value_and_grads(
        lambda p: rnnjax.tbptt(net, p, xs, chunk_length=chunk, seq_lengths=lengths)
    )
    (_, loop_out), loop_grads = value_and_grads(lambda p: chunk_loop(net, p, xs, chunk, lengths))
    (_, one_pass), full_grads = value_and_grads(lambda p: net.apply(p, xs, seq_lengths=lengths))
    jax.tree.map(tight, tbptt_out, one_pass)
    jax.tree.map(tight, loop_out, one_pass)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), tbptt_grads, loop_grads
    )
    assert not np.allclose(full_grads.kernel, tbptt_grads.kernel)  # truncation cuts


def test_tbptt_of_a_stack_with_dropout_masks_matches_one_pass():
    lstm = rnnjax.layer(rnnjax.lstm(4), dropout=0.3, recurrent_dropout=0.3)
    layer = rnnjax.stack(lstm, rnnjax.layer(rnnjax.gru(3)), dropout=0.2)
    params = layer.init(jax.random.key(0), FEATURES)
    options = dict(key=jax.random.key(5), deterministic=False)
    one_pass = layer.apply(params, inputs(), **options)
    jax.tree.map(tight, rnnjax.tbptt(layer, params, inputs(), chunk_length=2, **options), one_pass)


@pytest.mark.parametrize(
    "case",
    [case_named("simple_rnn-tanh"), LSTM_CASE, case_named("gru-reset_before")],
    ids=lambda c: c.name,
)
def test_resets_equal_running_the_segments_separately(case):
    params = random_params(case, jax.random.key(1), FEATURES)
    carry = random_carry(case, jax.random.key(2), (BATCH,))
    xs, lengths = inputs(time=10), (10, 8, 6)
    starts = [[0, 3, 4], [0, 5], [0]]  # sample 1 also resets at step 0 (a carry-free start)
    resets = np.zeros((BATCH, 10), bool)
    resets[0, [3, 4]] = resets[1, [0, 5]] = True
    run = jax.jit(
        lambda p, x, r, c, n: rnnjax.rnn(case.cell, p, x, resets=r, initial_carry=c, seq_lengths=n)
    )
    final, ys = run(params, xs, jnp.asarray(resets), carry, jnp.array(lengths))
    for b in range(BATCH):
        bounds = [*starts[b], lengths[b]]
        sample_carry = jax.tree.map(lambda a, b=b: a[b], carry)
        want = []
        for start, stop in itertools.pairwise(bounds):
            if start > 0 or resets[b, 0]:
                sample_carry = case.cell.initial_carry(params, ())
            sample_carry, y = rnnjax.rnn(
                case.cell, params, xs[b, start:stop], initial_carry=sample_carry
            )
            want.append(y)
        tight(ys[b, : lengths[b]], jnp.concatenate(want))
        assert not jnp.any(ys[b, lengths[b] :])
        jax.tree.map(lambda got, w, b=b: tight(got[b], w), final, sample_carry)


def test_no_resets_is_rnn():
    params = random_params(LSTM_CASE, jax.random.key(1), FEATURES)
    resets = jnp.zeros((BATCH, TIME), bool)
    lengths = jnp.array(LENGTHS)
    got = rnnjax.rnn(LSTM_CASE.cell, params, inputs(), resets=resets, seq_lengths=lengths)
    jax.tree.map(tight, got, rnnjax.rnn(LSTM_CASE.cell, params, inputs(), seq_lengths=lengths))


# --- mixed precision -----------------------------------------------------------------------


@pytest.mark.parametrize("case", [LSTM_CASE, GRU_CASE], ids=["lstm", "gru"])
def test_bfloat16_compute_stays_finite_and_close_to_float32(case):
    params = random_params(case, jax.random.key(1), FEATURES)
    lengths = jnp.array(LENGTHS)
    mixed = rnnjax.layer(case.cell, compute_dtype=jnp.bfloat16)
    final, ys = mixed.apply(params, inputs(time=12), seq_lengths=lengths)
    assert ys.dtype == jnp.float32 and jnp.isfinite(ys).all()
    assert all(a.dtype == jnp.float32 for a in carry_arrays(final))
    want_final, want = rnnjax.layer(case.cell).apply(params, inputs(time=12), seq_lengths=lengths)
    np.testing.assert_allclose(ys, want, atol=3e-2)  # the documented tolerance
    jax.tree.map(functools.partial(np.testing.assert_allclose, atol=3e-2), final, want_final)
    grads = jax.grad(lambda p: jnp.sum(mixed.apply(p, inputs(time=12))[1]))(params)
    assert all(g.dtype == jnp.float32 and jnp.isfinite(g).all() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("case", SOME_CASES, ids=SOME_IDS)
def test_bfloat16_compute_with_recurrent_dropout_is_close_to_float32(case):
    # Raised a TypeError before the derived cells became complete cells (one nesting order).
    params = random_params(case, jax.random.key(1), FEATURES)
    options = dict(dropout=0.2, recurrent_dropout=0.3)
    run = dict(seq_lengths=jnp.array(LENGTHS), key=jax.random.key(4), deterministic=False)
    mixed = rnnjax.layer(case.cell, compute_dtype=jnp.bfloat16, **options)
    _, ys = mixed.apply(params, inputs(), **run)
    _, want = rnnjax.layer(case.cell, **options).apply(params, inputs(), **run)
    np.testing.assert_allclose(ys, want, atol=3e-2)


def test_derived_cells_are_complete_cells_nesting_in_any_order():
    cell, bfloat16 = LSTM_CASE.cell, jnp.dtype(jnp.bfloat16)
    orders = {
        "dropout(bf16(cell))": derived.with_recurrent_dropout(
            derived.with_compute_dtype(cell, bfloat16)
        ),
        "bf16(dropout(cell))": derived.with_compute_dtype(
            derived.with_recurrent_dropout(cell), bfloat16
        ),
    }
    params = random_params(LSTM_CASE, jax.random.key(1), FEATURES)
    mask = jax.random.uniform(jax.random.key(2), (BATCH, HIDDEN), minval=0.5, maxval=1.5)
    wrapped = derived.RecurrentDropoutParams(params, mask)

    def reference(params, xs):  # float32, the mask on h where it enters the matmul
        carry, ys = cell.initial_carry(params, BATCH), []
        for t in range(TIME):
            z = xs[:, t] @ params.kernel + (carry.h * mask) @ params.recurrent_kernel
            carry, y = cell.gate_split.gates(params, carry, z + params.bias[None])
            ys.append(y)
        return jnp.stack(ys, axis=1)

    want = reference(params, inputs())
    for name, nested in orders.items():
        fresh = nested.init(jax.random.key(0), FEATURES)  # a working init: no mask yet
        assert isinstance(fresh, derived.RecurrentDropoutParams), name
        assert fresh.recurrent_mask is None and nested.input_size(fresh) == FEATURES
        assert fresh.params.kernel.dtype == jnp.float32  # honest params: the cell's own
        paths = ({"hoist_projection": False}, {"hoist_projection": True})
        for path in paths:
            _, ys = rnnjax.rnn(nested, wrapped, inputs(), **path)
            np.testing.assert_allclose(ys, want, atol=3e-2, err_msg=f"{name} {path}")


def _dot_operand_dtypes(jaxpr):
    """``(lhs, rhs, result)`` dtypes of every ``dot_general`` in ``jaxpr`` and its sub-jaxprs."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(tuple(str(v.aval.dtype) for v in (*eqn.invars, *eqn.outvars)))
        for sub in jex_core.jaxprs_in_params(eqn.params):
            found += _dot_operand_dtypes(sub)
    return found


@pytest.mark.parametrize("gate_split", [True, False], ids=["default", "plain-autodiff"])
def test_bfloat16_matmuls_take_bfloat16_operands_forward_and_backward(gate_split):
    cell = rnnjax.lstm(HIDDEN)
    params = cell.init(jax.random.key(0), FEATURES)
    mixed = rnnjax.layer(
        cell if gate_split else cell._replace(gate_split=None), compute_dtype=jnp.bfloat16
    )
    loss = lambda p, x: jnp.sum(mixed.apply(p, x)[1])  # noqa: E731
    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, inputs()).jaxpr
    dots = _dot_operand_dtypes(jaxpr)
    assert len(dots) >= 6  # forward: 2 per step; backward: dh per step, dW, dU, dx
    assert all(lhs == rhs == "bfloat16" for lhs, rhs, _ in dots), dots
    assert any(out == "float32" for *_, out in dots)  # the forward accumulates in float32


def test_bfloat16_lstm_keeps_its_state_in_float32():
    params = rnnjax.lstm(HIDDEN).init(jax.random.key(0), FEATURES)
    mixed = rnnjax.layer(rnnjax.lstm(HIDDEN), compute_dtype=jnp.bfloat16)
    carry = rnnjax.LSTMState(h=jnp.zeros((BATCH, HIDDEN)), c=jnp.full((BATCH, HIDDEN), 1 + 2**-12))
    final, ys = mixed.apply(params, inputs(time=1), initial_carry=carry)
    # bfloat16 would round c to 1; float32 keeps the 2**-12 through f * c.
    assert final.c.dtype == final.h.dtype == ys.dtype == jnp.float32
    assert not np.allclose(np.asarray(final.c), np.asarray(final.c.astype(jnp.bfloat16)), 0, 0)


# --- padding property, jit/vmap ------------------------------------------------------------


@functools.cache
def _bidirectional_stack():
    net = rnnjax.stack(
        rnnjax.bidirectional(rnnjax.layer(rnnjax.lstm(3)), merge="sum"),
        rnnjax.layer(rnnjax.gru(3), remat="segments", segment_length=2),
        residual=True,
    )
    return net, net.init(jax.random.key(0), FEATURES), jax.jit(net.apply)


@given(
    lengths=st.lists(st.integers(0, TIME), min_size=BATCH, max_size=BATCH),
    garbage=st.sampled_from([np.nan, 1e6, -3.0]),
)
def test_padding_never_changes_a_stacks_results(lengths, garbage):
    _, params, apply = _bidirectional_stack()
    lengths = np.asarray(lengths)
    xs = np.asarray(inputs())
    padded = np.where(np.arange(TIME)[None, :, None] < lengths[:, None, None], xs, garbage)
    got = apply(params, jnp.asarray(padded), seq_lengths=jnp.asarray(lengths))
    want = apply(params, inputs(), seq_lengths=jnp.asarray(lengths))
    jax.tree.map(np.testing.assert_array_equal, got, want)
    assert all(not jnp.any(got[1][b, n:]) for b, n in enumerate(lengths))


def test_vmap_over_an_extra_batch_axis():
    _, params, apply = _bidirectional_stack()
    xs = jnp.stack([inputs(0), inputs(1)])
    lengths = jnp.array([[7, 0, 4], [1, 2, 3]])
    mapped = jax.vmap(lambda x, n: apply(params, x, seq_lengths=n))(xs, lengths)
    direct = apply(params, xs, seq_lengths=lengths)
    jax.tree.map(tight, mapped, direct)


# --- errors --------------------------------------------------------------------------------


def test_errors_name_the_argument():
    cell = rnnjax.lstm(HIDDEN)
    with pytest.raises(ValueError, match=r"rnnjax.layer: dropout must be a number in \[0, 1\)"):
        rnnjax.layer(cell, dropout=1.0)
    with pytest.raises(
        ValueError, match=r"rnnjax.layer: remat must be one of \(False, True, 'segments'\)"
    ):
        rnnjax.layer(cell, remat="sqrt")
    with pytest.raises(ValueError, match=r"segment_length is used with remat='segments' only"):
        rnnjax.layer(cell, segment_length=4)
    layer = rnnjax.layer(cell, recurrent_dropout=0.1)
    params = layer.init(jax.random.key(0), FEATURES)
    with pytest.raises(ValueError, match=r"rnnjax.layer: key is required when deterministic=False"):
        layer.apply(params, inputs(), deterministic=False)
    with pytest.raises(ValueError, match=r"xs must have shape \[\*batch, time, 4\]"):
        layer.apply(params, jnp.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"rnnjax.bidirectional: merge must be one of"):
        rnnjax.bidirectional(layer, merge="max")
    with pytest.raises(ValueError, match=r"merge='sum' needs equal output shapes; got forward"):
        bi = rnnjax.bidirectional(layer, rnnjax.layer(rnnjax.gru(2)), merge="sum")
        bi.apply(bi.init(jax.random.key(0), FEATURES), inputs())
    with pytest.raises(ValueError, match=r"forward has no flip"):
        rnnjax.bidirectional(rnnjax.Layer(layer.init, layer.apply))
    with pytest.raises(ValueError, match=r"rnnjax.stack: needs at least one layer"):
        rnnjax.stack()
    with pytest.raises(TypeError, match=r"rnnjax.stack: layer 1 must be a rnnjax.Layer"):
        rnnjax.stack(layer, cell)


def test_stack_errors():
    wide, narrow = rnnjax.layer(rnnjax.gru(6)), rnnjax.layer(rnnjax.gru(3))
    with pytest.raises(ValueError, match=r"residual=True needs layer 1 to keep the size of its"
                       " input; got input size 6 and output size 3"):  # fmt: skip
        rnnjax.stack(wide, narrow, residual=True).init(jax.random.key(0), FEATURES)
    params = rnnjax.stack(wide, narrow).init(jax.random.key(0), FEATURES)
    with pytest.raises(ValueError, match=r"keep the shape of its input; got input \(3, 7, 6\)"):
        rnnjax.stack(wide, narrow, residual=True).apply(params, inputs())
    with pytest.raises(ValueError, match=r"initial_carry must be a tuple with one carry per layer"):
        rnnjax.stack(wide, narrow).apply(params, inputs(), initial_carry=jnp.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"rnnjax.stack: key is required"):
        rnnjax.stack(wide, narrow, dropout=0.1).apply(params, inputs(), deterministic=False)
    none = rnnjax.bidirectional(wide, merge="none")
    with pytest.raises(ValueError, match=r"layer 0 returns .* not one array"):
        rnnjax.stack(none, narrow).init(jax.random.key(0), FEATURES)


def test_tbptt_and_reset_errors():
    cell = rnnjax.gru(HIDDEN)
    params = cell.init(jax.random.key(0), FEATURES)
    with pytest.raises(ValueError, match=r"rnnjax.tbptt: chunk_length must be a positive int"):
        rnnjax.tbptt(rnnjax.layer(cell), params, inputs(), chunk_length=0)
    with pytest.raises(ValueError, match=r"resets must have shape \[\*batch, time\] = \(3, 7\)"):
        rnnjax.rnn(cell, params, inputs(), resets=jnp.zeros((3, 6), bool))
    with pytest.raises(TypeError, match=r"rnnjax.rnn: resets must be boolean"):
        rnnjax.rnn(cell, params, inputs(), resets=jnp.zeros((3, 7)))
