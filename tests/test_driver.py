"""``rnnjax.rnn``: against float64 references, across layouts and transformations, padding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

import rnnjax
from tests.cells_under_test import (
    CASE_IDS,
    CASES,
    carry_arrays,
    case_named,
    random_carry,
    random_params,
    reference_run,
)

BATCH, TIME, FEATURES = 3, 6, 4
LSTM_CASE = case_named("lstm")


def make_inputs(case, key=0, batch_shape=(BATCH,), dtype=jnp.float32):
    keys = jax.random.split(jax.random.key(key), 3)
    params = random_params(case, keys[0], FEATURES, dtype)
    xs = jax.random.normal(keys[1], (*batch_shape, TIME, FEATURES), dtype)
    carry = random_carry(case, keys[2], batch_shape, dtype)
    return params, xs, carry


def assert_close(actual, expected, tol=2e-5):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), e, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [None, (6, 0, 3)], ids=["full", "padded"])
def test_matches_float64_reference(case, reverse, lengths, hoist_projection):
    params, xs, carry = make_inputs(case)
    seq_lengths = None if lengths is None else jnp.array(lengths)
    final, ys = rnnjax.rnn(
        case.cell,
        params,
        xs,
        initial_carry=carry,
        seq_lengths=seq_lengths,
        reverse=reverse,
        hoist_projection=hoist_projection,
    )
    want_final, want_ys = reference_run(case, params, xs, carry, lengths, reverse)
    assert_close(ys, want_ys)
    assert_close(carry_arrays(final), want_final)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_reference_in_float64_to_float64_rounding(case, hoist_projection):
    with jax.enable_x64(True):
        params, xs, carry = make_inputs(case, dtype=jnp.float64)
        lengths = (2, 6, 5)
        final, ys = rnnjax.rnn(
            case.cell,
            params,
            xs,
            initial_carry=carry,
            seq_lengths=jnp.array(lengths),
            hoist_projection=hoist_projection,
        )
        assert ys.dtype == jnp.float64
        want_final, want_ys = reference_run(case, params, xs, carry, lengths)
        assert_close(ys, want_ys, tol=1e-12)
        assert_close(carry_arrays(final), want_final, tol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_equals_python_loop_over_step(case, hoist_projection):
    params, xs, carry = make_inputs(case)
    final, ys = rnnjax.rnn(
        case.cell, params, xs, initial_carry=carry, hoist_projection=hoist_projection
    )
    loop_carry, loop_ys = carry, []
    for t in range(TIME):
        loop_carry, y = case.cell.step(params, loop_carry, xs[:, t])
        loop_ys.append(y)
    tight = functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6)
    jax.tree.map(tight, (final, ys), (loop_carry, jnp.stack(loop_ys, axis=1)))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_time_major_equals_batch_first(case, reverse):
    params, xs, carry = make_inputs(case, batch_shape=(2, BATCH))
    lengths = jnp.array([[6, 1, 0], [4, 6, 2]])
    kwargs = dict(initial_carry=carry, seq_lengths=lengths, reverse=reverse)
    batch_first = rnnjax.rnn(case.cell, params, xs, **kwargs)
    time_major = rnnjax.rnn(case.cell, params, jnp.moveaxis(xs, 2, 0), time_major=True, **kwargs)
    np.testing.assert_array_equal(jnp.moveaxis(time_major[1], 0, 2), batch_first[1])
    jax.tree.map(np.testing.assert_array_equal, time_major[0], batch_first[0])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_jit_equals_eager(case):
    params, xs, carry = make_inputs(case)
    lengths = jnp.array([6, 2, 4])
    run = functools.partial(rnnjax.rnn, case.cell, reverse=True)
    eager = run(params, xs, initial_carry=carry, seq_lengths=lengths)
    jitted = jax.jit(run)(params, xs, initial_carry=carry, seq_lengths=lengths)
    tight = functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6)
    jax.tree.map(tight, jitted, eager)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_vmap_over_an_extra_batch_axis(case):
    params, xs, carry = make_inputs(case, batch_shape=(2, BATCH))
    lengths = jnp.array([[6, 1, 0], [4, 6, 2]])

    def run(xs, carry, lengths):
        return rnnjax.rnn(case.cell, params, xs, initial_carry=carry, seq_lengths=lengths)

    mapped = jax.vmap(run)(xs, carry, lengths)
    direct = run(xs, carry, lengths)  # extra leading batch axes, handled by rnn itself
    one_by_one = [run(xs[i], jax.tree.map(lambda a, i=i: a[i], carry), lengths[i]) for i in (0, 1)]
    tight = functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6)
    jax.tree.map(tight, mapped, direct)
    for i, single in enumerate(one_by_one):
        jax.tree.map(lambda a, b, i=i: tight(a[i], b), mapped, single)


def test_unbatched_sequence():
    params, xs, carry = make_inputs(LSTM_CASE)
    final, ys = rnnjax.rnn(
        LSTM_CASE.cell, params, xs[1], initial_carry=rnnjax.LSTMState(carry.h[1], carry.c[1])
    )
    batched_final, batched_ys = rnnjax.rnn(LSTM_CASE.cell, params, xs, initial_carry=carry)
    np.testing.assert_allclose(ys, batched_ys[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(final.c, batched_final.c[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_check_grads(case, reverse, hoist_projection):
    with jax.enable_x64(True):
        params, xs, carry = make_inputs(case, dtype=jnp.float64)
        lengths = jnp.array([6, 0, 3])

        def loss(params, xs, carry):
            final, ys = rnnjax.rnn(
                case.cell,
                params,
                xs,
                initial_carry=carry,
                seq_lengths=lengths,
                reverse=reverse,
                hoist_projection=hoist_projection,
            )
            return jnp.sum(ys**2) + sum(jnp.sum(jnp.sin(a)) for a in carry_arrays(final))

        check_grads(loss, (params, xs, carry), order=1, modes=["fwd", "rev"], eps=1e-4)


def test_second_order_derivatives():
    with jax.enable_x64(True):
        params, xs, _carry = make_inputs(LSTM_CASE, dtype=jnp.float64)
        lengths = jnp.array([6, 0, 3])

        def loss(xs):
            _, ys = rnnjax.rnn(LSTM_CASE.cell, params, xs[:, :3], seq_lengths=lengths // 2)
            return jnp.sum(ys**2)

        check_grads(loss, (xs,), order=2, modes=["rev"], eps=1e-4)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_remat_and_unroll_change_nothing(case):
    params, xs, carry = make_inputs(case)
    lengths = jnp.array([6, 2, 4])

    def value_and_grads(**options):
        def loss(params, xs):
            final, ys = rnnjax.rnn(
                case.cell, params, xs, initial_carry=carry, seq_lengths=lengths, **options
            )
            return jnp.sum(ys**2) + jnp.sum(carry_arrays(final)[0])

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, xs)

    plain = value_and_grads()
    tight = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
    # unroll applies to a sequential scan: a linear_scan cell is stepped for it
    stepped = {} if case.cell.linear_scan is None else dict(parallel=False)
    for options in [dict(remat=True), dict(unroll=4), dict(unroll=True, remat=True)]:
        stepped_options = stepped if "unroll" in options else {}
        jax.tree.map(tight, value_and_grads(**options, **stepped_options), plain)


def test_remat_keeps_carries_not_gate_activations():
    cell = rnnjax.lstm(64)
    params = cell.init(jax.random.key(0), 64)
    xs = jnp.zeros((4, 512, 64))

    def temp_bytes(remat):
        loss = lambda p: jnp.sum(rnnjax.rnn(cell, p, xs, remat=remat)[1])  # noqa: E731
        compiled = jax.jit(jax.grad(loss)).lower(params).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes(remat=True) < 0.7 * temp_bytes(remat=False)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bfloat16_runs_and_stays_finite(case):
    params, xs, _carry = make_inputs(case, dtype=jnp.bfloat16)
    final, ys = rnnjax.rnn(case.cell, params, xs, seq_lengths=jnp.array([6, 3, 0]))
    assert ys.dtype == jnp.bfloat16
    assert all(a.dtype == jnp.bfloat16 for a in carry_arrays(final))
    assert jnp.isfinite(ys).all()
    f32 = rnnjax.rnn(
        case.cell,
        jax.tree.map(lambda a: a.astype(jnp.float32), params),
        xs.astype(jnp.float32),
        seq_lengths=jnp.array([6, 3, 0]),
    )[1]
    np.testing.assert_allclose(ys.astype(jnp.float32), f32, atol=0.05)
    grads = jax.grad(lambda p: jnp.sum(rnnjax.rnn(case.cell, p, xs)[1].astype(jnp.float32)))(params)
    assert all(jnp.isfinite(g).all() and g.dtype == jnp.bfloat16 for g in jax.tree.leaves(grads))


def test_carry_keeps_the_dtype_it_starts_with():
    params, xs, _ = make_inputs(LSTM_CASE, dtype=jnp.bfloat16)
    carry = LSTM_CASE.cell.initial_carry(params, BATCH, jnp.float32)
    final, _ys = rnnjax.rnn(LSTM_CASE.cell, params, xs, initial_carry=carry)
    assert final.c.dtype == jnp.float32


def test_numpy_inputs():
    params, xs, _carry = make_inputs(LSTM_CASE)
    lengths = np.array([6, 2, 0])
    from_numpy = rnnjax.rnn(LSTM_CASE.cell, params, np.asarray(xs, np.float64), seq_lengths=lengths)
    from_jax = rnnjax.rnn(LSTM_CASE.cell, params, xs, seq_lengths=jnp.asarray(lengths))
    assert from_numpy[1].dtype == jnp.float32
    jax.tree.map(np.testing.assert_array_equal, from_numpy, from_jax)


def test_a_plain_tuple_lstm_carry_is_refused_by_rnn_layer_and_step():
    """Flax's LSTM carry is ``(c, h)``, rnnjax's ``LSTMState(h, c)``: a plain tuple could be
    either, so it is refused wherever a carry enters, never silently read in one order."""
    params, xs, carry = make_inputs(LSTM_CASE)
    plain = (carry.c, carry.h)
    message = r"must be rnnjax.LSTMState\(h=..., c=...\), not a plain (tuple|list), whose order"
    with pytest.raises(TypeError, match="rnnjax.rnn: initial_carry " + message):
        rnnjax.rnn(LSTM_CASE.cell, params, xs, initial_carry=plain)
    with pytest.raises(TypeError, match=message):
        rnnjax.layer(LSTM_CASE.cell).apply(params, xs, initial_carry=list(plain))
    step = LSTM_CASE.cell.step
    with pytest.raises(TypeError, match=r"rnnjax.lstm\(\d+\).step: carry " + message):
        step(params, plain, xs[:, 0])


def test_cell_step_checks_its_arguments_at_trace_time():
    params, xs, carry = make_inputs(LSTM_CASE)
    step, hidden = jax.jit(LSTM_CASE.cell.step), carry.h.shape[-1]
    features = xs.shape[-1]
    with pytest.raises(ValueError, match=rf"step: x must have shape \[\*batch, {features}\] \(the"):
        step(params, carry, jnp.ones((xs.shape[0], features + 1)))
    with pytest.raises(
        ValueError, match=rf"step: carry must have shape LSTMState\(h=\(2, {hidden}\)"
    ):
        step(params, carry, xs[:2, 0])  # a batch of 2 against a carry of a larger batch
    with pytest.raises(
        ValueError, match=r"rnnjax.gru\(\d+, reset_after=True\): params must be GRU"
    ):
        rnnjax.gru(hidden).step(params, carry.h, xs[:, 0])  # the LSTM's params


def test_no_retrace_on_second_call():
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def run(cell, params, xs, lengths):
        traces.append(None)
        return rnnjax.rnn(cell, params, xs, seq_lengths=lengths)

    params, xs, _ = make_inputs(LSTM_CASE)
    run(rnnjax.lstm(5), params, xs, jnp.array([6, 2, 0]))
    # A cell built again with equal settings is the same object: no new trace either.
    run(rnnjax.lstm(5), jax.tree.map(lambda a: a + 1, params), xs + 1, jnp.array([1, 2, 3]))
    assert len(traces) == 1


# --- Padding: property tests -------------------------------------------------------------


@functools.cache
def _value_and_grads(case_name, reverse):
    cell = case_named(case_name).cell

    def loss(params, xs, carry, lengths):
        final, ys = rnnjax.rnn(
            cell, params, xs, initial_carry=carry, seq_lengths=lengths, reverse=reverse
        )
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(a)) for a in carry_arrays(final)), (
            final,
            ys,
        )

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


lengths_strategy = st.lists(st.integers(0, TIME), min_size=BATCH, max_size=BATCH)
fill_strategy = st.floats(allow_nan=True, allow_infinity=True, width=32)


@given(
    case_name=st.sampled_from(CASE_IDS),
    reverse=st.booleans(),
    lengths=lengths_strategy,
    fill=fill_strategy,
    seed=st.integers(0, 2**16),
)
def test_padding_never_changes_outputs_carry_or_gradients(case_name, reverse, lengths, fill, seed):
    params, xs, carry = make_inputs(case_named(case_name), key=seed)
    lengths = jnp.array(lengths)
    padding = jnp.arange(TIME)[None, :, None] >= lengths[:, None, None]
    garbage = jnp.where(padding, jnp.float32(fill), xs)
    noise = jnp.where(padding, jax.random.normal(jax.random.key(seed + 1), xs.shape), xs)
    run = _value_and_grads(case_name, reverse)
    (value, (final, ys)), grads = run(params, garbage, carry, lengths)
    (other_value, other_aux), other_grads = run(params, noise, carry, lengths)

    jax.tree.map(np.testing.assert_array_equal, (value, final, ys), (other_value, *other_aux))
    jax.tree.map(np.testing.assert_array_equal, grads, other_grads)
    assert jnp.isfinite(value) and all(jnp.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert not jnp.where(padding, ys, 0).any(), "outputs past a length must be zero"
    assert not jnp.where(padding, grads[1], 0).any(), "padding must get zero gradient"


@functools.cache
def _run_alone(case_name, reverse, length):
    cell = case_named(case_name).cell
    return jax.jit(
        lambda params, xs, carry: rnnjax.rnn(
            cell, params, xs[:length], initial_carry=carry, reverse=reverse
        )
    )


@given(
    case_name=st.sampled_from(CASE_IDS),
    reverse=st.booleans(),
    lengths=lengths_strategy,
    seed=st.integers(0, 2**16),
)
def test_each_sequence_as_if_run_alone_on_its_valid_part(case_name, reverse, lengths, seed):
    case = case_named(case_name)
    params, xs, carry = make_inputs(case, key=seed)
    run = _value_and_grads(case_name, reverse)
    (_, (final, ys)), _ = run(params, xs, carry, jnp.array(lengths))
    for b, length in enumerate(lengths):
        own_carry = jax.tree.map(lambda a, b=b: a[b], carry)
        own_final = jax.tree.map(lambda a, b=b: a[b], final)
        if length == 0:  # no step: the initial carry comes back unchanged
            jax.tree.map(np.testing.assert_array_equal, own_final, own_carry)
            continue
        alone_final, alone_ys = _run_alone(case_name, reverse, length)(params, xs[b], own_carry)
        tight = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
        tight(ys[b, :length], alone_ys)
        jax.tree.map(tight, own_final, alone_final)


# --- Errors: raised at trace time, naming the argument and both shapes ---------------------


def test_errors_are_raised_at_trace_time():
    params, xs, _carry = make_inputs(LSTM_CASE)
    cell = LSTM_CASE.cell
    with pytest.raises(ValueError, match=r"xs must have shape \[\*batch, time, 4\]"):
        jax.jit(lambda xs: rnnjax.rnn(cell, params, xs)).lower(xs[..., :3])


@pytest.mark.parametrize(
    ("xs_shape", "kwargs", "error", "message"),
    [
        (
            (6,),
            {},
            ValueError,
            r"xs must have shape \[\*batch, time, 4\] \(rank >= 2\); got \(6,\)",
        ),
        (
            (3, 6, 5),
            {},
            ValueError,
            r"xs must have shape \[\*batch, time, 4\] \(features = the params' input size\);"
            r" got \(3, 6, 5\)",
        ),
        (
            (6, 3, 5),
            {"time_major": True},
            ValueError,
            r"xs must have shape \[time, \*batch, 4\] .*; got \(6, 3, 5\)",
        ),
        (
            (3, 6, 4),
            {"seq_lengths": jnp.array([6, 6])},
            ValueError,
            r"seq_lengths must have shape \(3,\) \(the batch shape of xs\); got \(2,\)",
        ),
        (
            (3, 6, 4),
            {"seq_lengths": jnp.array(6)},
            ValueError,
            r"seq_lengths must have shape \(3,\) \(the batch shape of xs\); got \(\)",
        ),
        (
            (3, 6, 4),
            {"seq_lengths": [6, 6, 6]},
            ValueError,
            r"seq_lengths must have shape \(3,\) .*; got <class 'list'>",
        ),
        (
            (3, 6, 4),
            {"seq_lengths": jnp.array([6.0, 6.0, 6.0])},
            TypeError,
            r"seq_lengths must have an integer dtype; got float32 with shape \(3,\)",
        ),
        (
            (3, 6, 4),
            {"seq_lengths": jnp.array([7, 6, -1])},
            ValueError,
            r"seq_lengths must lie in \[0, 6\] \(the length of xs\); got values from -1 to 7",
        ),
        (
            (3, 6, 4),
            {"initial_carry": rnnjax.LSTMState(jnp.zeros((3, 5)), jnp.zeros((2, 5)))},
            ValueError,
            r"initial_carry must have shape LSTMState\(h=\(3, 5\), c=\(3, 5\)\) \(\[\*batch,"
            r" hidden\]\); got LSTMState\(h=\(3, 5\), c=\(2, 5\)\)",
        ),
        (
            (3, 6, 4),
            {"initial_carry": jnp.zeros((3, 5))},
            ValueError,
            r"initial_carry must have shape LSTMState\(h=\(3, 5\), c=\(3, 5\)\) .*; got \(3, 5\)",
        ),
    ],
    ids=[
        "rank",
        "features",
        "features-time-major",
        "lengths-shape",
        "lengths-scalar",
        "lengths-list",
        "lengths-dtype",
        "lengths-range",
        "carry-shape",
        "carry-structure",
    ],
)
def test_error_messages(xs_shape, kwargs, error, message):
    params = LSTM_CASE.cell.init(jax.random.key(0), FEATURES)
    with pytest.raises(error, match=r"^rnnjax.rnn: " + message):
        rnnjax.rnn(LSTM_CASE.cell, params, jnp.zeros(xs_shape), **kwargs)


def test_integer_xs_are_refused():
    params = LSTM_CASE.cell.init(jax.random.key(0), FEATURES)
    with pytest.raises(
        TypeError, match=r"xs must be real floating point; got dtype int32 with shape \(3, 6, 4\)"
    ):
        rnnjax.rnn(LSTM_CASE.cell, params, jnp.zeros((3, 6, 4), jnp.int32))
