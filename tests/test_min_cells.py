"""minGRU, minLSTM and ``linear_recurrence``: float64 references, parallel == sequential,
padding, long saturated sequences, every transformation, the layers and the modules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

import rnnjax
import rnnjax.linen
import rnnjax.nnx
from tests.reference import min_gru_step, min_lstm_step, run

BATCH, TIME, FEATURES, HIDDEN = 3, 7, 4, 5
LENGTHS = jnp.array([7, 0, 4])
CELLS = {"min_gru": rnnjax.min_gru(HIDDEN), "min_lstm": rnnjax.min_lstm(HIDDEN)}
tight = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)


REFERENCE = {"min_gru": min_gru_step, "min_lstm": min_lstm_step}  # float64, from the paper


def setup(kind, key=0, time=TIME, batch=BATCH):
    keys = jax.random.split(jax.random.key(key), 3)
    params = CELLS[kind].init(keys[0], FEATURES)
    params = params._replace(bias=jax.random.uniform(keys[0], params.bias.shape, minval=-1))
    xs = jax.random.normal(keys[1], (batch, time, FEATURES))
    carry = jax.random.normal(keys[2], (batch, HIDDEN))
    return params, xs, carry


# The float64 references run through every driver and layer test of the shared cell table
# (tests/cells_under_test.py); here, what is particular to the linear-scan cells.


@pytest.mark.parametrize("kind", CELLS)
def test_parallel_equals_sequential_at_4096_steps(kind):
    params, xs, carry = setup(kind, time=4096)
    lengths = jax.random.randint(jax.random.key(5), (BATCH,), 0, 4097)
    resets = jax.random.bernoulli(jax.random.key(6), 0.001, (BATCH, 4096))
    results = [
        rnnjax.rnn(
            CELLS[kind],
            params,
            xs,
            initial_carry=carry,
            seq_lengths=lengths,
            resets=resets,
            parallel=parallel,
        )
        for parallel in (True, False)
    ]
    for got, want in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True):
        assert float(jnp.max(jnp.abs(got - want))) <= 1e-5


@pytest.mark.parametrize("kind", CELLS)
def test_100000_saturated_steps_stay_finite(kind):
    cell = CELLS[kind]
    params = cell.init(jax.random.key(0), 1)
    params = params._replace(kernel=jnp.full_like(params.kernel, 40.0))  # gates at 0 and 1
    xs = jnp.where(jnp.arange(100_000) % 2 == 0, 1.0, -1.0).reshape(1, -1, 1)

    def loss(params, xs):
        final, ys = rnnjax.rnn(cell, params, xs, initial_carry=jnp.ones((1, HIDDEN)))
        return jnp.sum(ys[:, -10:]) + jnp.sum(final)

    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, xs)
    assert jnp.isfinite(value)
    assert all(jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))


@pytest.mark.parametrize("kind", CELLS)
def test_transformations_compose(kind):
    cell = CELLS[kind]
    with jax.enable_x64(True):
        params, xs, carry = jax.tree.map(
            lambda a: a.astype(jnp.float64), setup(kind, time=5, batch=2)
        )

        def loss(params, xs, carry):
            lengths = jnp.array([5, 3])
            final, ys = rnnjax.rnn(cell, params, xs, initial_carry=carry, seq_lengths=lengths)
            return jnp.sum(ys**2) + jnp.sum(jnp.sin(final))

        check_grads(loss, (params, xs, carry), order=1, modes=["fwd", "rev"], eps=1e-4)
        hessian = jax.hessian(loss, argnums=2)(params, xs, carry)  # [2, 5, 2, 5]
        np.testing.assert_allclose(hessian, hessian.transpose(2, 3, 0, 1), atol=1e-10)
    params, xs, _ = setup(kind, time=5, batch=2)
    extra = jnp.stack([xs, -xs])  # vmap over an extra batch axis equals *batch = (2, 2)
    per = jax.vmap(lambda x: rnnjax.rnn(cell, params, x)[1])(extra)
    tight(per, jax.jit(lambda x: rnnjax.rnn(cell, params, x)[1])(extra))


@functools.partial(jax.jit, static_argnames="reverse")
@functools.partial(jax.value_and_grad, has_aux=True)
def _padded_loss(params, xs, carry, lengths, reverse):
    cell = CELLS["min_lstm"]
    final, ys = rnnjax.rnn(
        cell, params, xs, initial_carry=carry, seq_lengths=lengths, reverse=reverse
    )
    return jnp.sum(ys**2) + jnp.sum(final), ys


@given(
    lengths=st.lists(st.integers(0, 6), min_size=2, max_size=2),
    fill=st.sampled_from([np.nan, 1e6, -3.0]),
    reverse=st.booleans(),
)
def test_padding_never_changes_results_or_gradients(lengths, fill, reverse):
    params, xs, carry = setup("min_lstm", time=6, batch=2)
    lengths = jnp.array(lengths)
    padding = jnp.arange(6)[None, :, None] >= lengths[:, None, None]
    clean = _padded_loss(params, jnp.where(padding, 0.0, xs), carry, lengths, reverse)
    dirty = _padded_loss(params, jnp.where(padding, fill, xs), carry, lengths, reverse)
    jax.tree.map(tight, dirty, clean)


@pytest.mark.parametrize("method", ["sequential", "associative"])
@pytest.mark.parametrize("time_major", [False, True])
def test_linear_recurrence_matches_a_loop(method, time_major):
    keys = jax.random.split(jax.random.key(3), 3)
    a = jax.random.uniform(keys[0], (BATCH, TIME, 2))
    b = jax.random.normal(keys[1], (BATCH, TIME, 2))
    initial = jax.random.normal(keys[2], (BATCH, 2))
    for reverse in (False, True):
        layout = (lambda t: jnp.swapaxes(t, 0, 1)) if time_major else (lambda t: t)
        final, hs = rnnjax.linear_recurrence(
            layout(a), layout(b), initial=initial, seq_lengths=LENGTHS, reverse=reverse,
            time_major=time_major, method=method,
        )  # fmt: skip
        step = lambda p, h, x: x[..., :2] * h + x[..., 2:]  # noqa: E731
        want_final, want = run(step, {}, jnp.concatenate([a, b], -1), (initial,), LENGTHS, reverse)
        tight(layout(hs), want)
        tight(final, want_final[0])


@pytest.mark.parametrize("method", ["sequential", "associative"])
@pytest.mark.parametrize("reverse", [False, True])
def test_linear_recurrence_derivatives_of_order_2(method, reverse):
    """The custom tangent rule (and its transpose, reverse mode) against finite differences."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(4), 3)
        a = jax.random.uniform(keys[0], (2, 4, 2), jnp.float64)
        b = jax.random.normal(keys[1], (2, 4, 2), jnp.float64)
        initial = jax.random.normal(keys[2], (2, 2), jnp.float64)

        def loss(a, b, initial):
            final, hs = rnnjax.linear_recurrence(
                a, b, initial=initial, seq_lengths=jnp.array([4, 2]), reverse=reverse,
                method=method,
            )  # fmt: skip
            return jnp.sum(jnp.sin(hs)) + jnp.sum(final**2)

        check_grads(loss, (a, b, initial), order=2, modes=["fwd", "rev"], eps=1e-4)


def test_errors_name_the_argument():
    a = jnp.ones((2, 3, 4))
    with pytest.raises(ValueError, match=r"a and b must have the same shape; got a \(2, 3, 4\)"):
        rnnjax.linear_recurrence(a, jnp.ones((2, 3, 5)))
    with pytest.raises(ValueError, match=r"initial must have shape \[\*batch, n\] = \(2, 4\)"):
        rnnjax.linear_recurrence(a, a, initial=jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"linear_recurrence: seq_lengths must have shape \(2,\)"):
        rnnjax.linear_recurrence(a, a, seq_lengths=jnp.ones(3, int))
    with pytest.raises(ValueError, match="method must be one of"):
        rnnjax.linear_recurrence(a, a, method="log")
    gru_params = rnnjax.gru(HIDDEN).init(jax.random.key(0), FEATURES)
    with pytest.raises(ValueError, match=r"rnnjax.min_lstm\(5\): params must be MinRNNParams"):
        rnnjax.rnn(CELLS["min_lstm"], gru_params, jnp.ones((2, 3, FEATURES)))
    with pytest.raises(ValueError, match="parallel=True needs a cell with the `linear_scan`"):
        rnnjax.rnn(rnnjax.gru(HIDDEN), gru_params, jnp.ones((2, 3, FEATURES)), parallel=True)
    para_gru = rnnjax.para_gru(HIDDEN)  # a diagonal cell: Newton's parallel, not this one
    with pytest.raises(
        ValueError,
        match=r"rnnjax.rnn: parallel=True needs a cell with the `linear_scan` capability \(the"
        r" built-in ones: min_gru, min_lstm, lru, rg_lru\); this cell has none",
    ):
        rnnjax.rnn(
            para_gru,
            para_gru.init(jax.random.key(0), FEATURES),
            jnp.ones((2, 3, FEATURES)),
            parallel=True,
        )
    with pytest.raises(ValueError, match="recurrent_dropout needs a cell with a recurrent matmul"):
        rnnjax.layer(CELLS["min_gru"], recurrent_dropout=0.1)


@pytest.mark.parametrize("kind", CELLS)
def test_layers_stacks_tbptt_remat_and_bfloat16(kind):
    cell = CELLS[kind]
    params, xs, _ = setup(kind)
    one = rnnjax.layer(cell)
    want = one.apply(params, xs, seq_lengths=LENGTHS)
    segments = rnnjax.layer(cell, remat="segments")
    jax.tree.map(tight, segments.apply(params, xs, seq_lengths=LENGTHS), want)
    jax.tree.map(tight, rnnjax.tbptt(one, params, xs, chunk_length=3, seq_lengths=LENGTHS), want)
    _, mixed = rnnjax.layer(cell, compute_dtype=jnp.bfloat16).apply(params, xs)
    np.testing.assert_allclose(mixed, one.apply(params, xs)[1], atol=3e-2)
    deep = rnnjax.stack(rnnjax.bidirectional(one, merge="sum"), one, one, residual=True)
    deep_params = deep.init(jax.random.key(1), FEATURES)
    _, ys = deep.apply(deep_params, xs, seq_lengths=LENGTHS)
    (fwd, bwd), first = deep_params[0], None
    first = one.apply(fwd, xs, seq_lengths=LENGTHS)[1]
    first = first + rnnjax.layer(cell, reverse=True).apply(bwd, xs, seq_lengths=LENGTHS)[1]
    second = one.apply(deep_params[1], first, seq_lengths=LENGTHS)[1] + first
    tight(ys, one.apply(deep_params[2], second, seq_lengths=LENGTHS)[1] + second)
    _, dropped = rnnjax.layer(cell, dropout=0.5).apply(
        params, xs, key=jax.random.key(0), deterministic=False
    )
    assert not np.allclose(dropped, want[1])


def test_modules_equal_the_functional_layer():
    xs = setup("min_gru")[1]
    module = rnnjax.nnx.MinGRU(FEATURES, HIDDEN, return_sequences=True, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(
        module(xs, seq_lengths=LENGTHS),
        rnnjax.layer(CELLS["min_gru"]).apply(module.params, xs, seq_lengths=LENGTHS)[1],
    )
    linen = rnnjax.linen.MinLSTM(HIDDEN, return_state=True)
    variables = linen.init(jax.random.key(0), xs)
    last, state = linen.apply(variables, xs)
    final, _ = rnnjax.rnn(CELLS["min_lstm"], variables["params"]["cell"], xs)
    np.testing.assert_array_equal(state, final)
    np.testing.assert_array_equal(last, final)
