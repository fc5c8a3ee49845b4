"""``rnnjax.rnn(..., parallel="newton")`` and ``rnnjax.newton_rnn`` against the sequential scan.

The diagonal cells here are written for these tests (dict params, as a user would write
them): an IndRNN-like tanh cell and a ParaGRU-like cell (one carry array, ``k = 1``) and a
ParaLSTM-like CIFG cell whose carry ``{"c", "h"}`` gives ``2 x 2`` Jacobian blocks per unit.
Their Jacobians come from ``k`` tangents of ones (exact for a cell that acts unit by unit),
and the sequential scan of ``rnnjax.rnn(parallel=False)`` is the reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from rnnjax._src.core.contract import DiagonalJacobian

H, F, B = 4, 3, 3


def _unitwise_jacobian(step):
    """``step`` with its carry Jacobian ``[*batch, H, k, k]``, from ``k`` tangents of ones."""

    def with_jacobian(params, carry, x):
        out = step(params, carry, x)
        leaves, treedef = jax.tree.flatten(carry)
        columns = []
        for j in range(len(leaves)):
            tangent = [
                jnp.ones_like(a) if i == j else jnp.zeros_like(a) for i, a in enumerate(leaves)
            ]
            d_new = jax.jvp(
                lambda c: step(params, c, x)[0], (carry,), (treedef.unflatten(tangent),)
            )[1]
            columns.append(jnp.stack(jax.tree.leaves(d_new), axis=-1))
        return out, jnp.stack(columns, axis=-1)

    return with_jacobian


def _scale(v, like):
    return jnp.broadcast_to(v, like.shape)


def _cell(names, step, carry_keys=None):
    def init(key, input_size, dtype=jnp.float32):
        keys = jax.random.split(key, 2 * len(names))
        params = {}
        for i, name in enumerate(names):
            params["w" + name] = jax.random.normal(keys[2 * i], (input_size, H), dtype)
            params["u" + name] = jax.random.uniform(keys[2 * i + 1], (H,), dtype, -1.0, 1.0)
            params["b" + name] = jnp.zeros((H,), dtype)
        return params

    def initial_carry(params, batch_shape, dtype=None):
        shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
        zeros = jnp.zeros((*shape, H), dtype or params["b" + names[0]].dtype)
        return zeros if carry_keys is None else {key: zeros for key in carry_keys}

    return rnnjax.Cell(
        init,
        initial_carry,
        step,
        input_size=lambda params: params["w" + names[0]].shape[0],
        output=lambda carry: carry if carry_keys is None else carry["h"],
        diagonal_jacobian=DiagonalJacobian(_unitwise_jacobian(step)),
    )


def _pre(params, name, x, h):
    return (
        x @ params["w" + name] + _scale(params["u" + name], h) * h + _scale(params["b" + name], h)
    )


def _indrnn_step(params, h, x):
    h = jnp.tanh(_pre(params, "", x, h))
    return h, h


def _para_gru_step(params, h, x):
    z = jax.nn.sigmoid(_pre(params, "z", x, h))
    r = jax.nn.sigmoid(_pre(params, "r", x, h))
    n = jnp.tanh(x @ params["wn"] + r * _scale(params["un"], h) * h + _scale(params["bn"], h))
    h = (1 - z) * n + z * h
    return h, h


def _para_lstm_step(params, carry, x):
    h, c = carry["h"], carry["c"]
    f = jax.nn.sigmoid(_pre(params, "f", x, h))
    c = f * c + (1 - f) * jnp.tanh(_pre(params, "g", x, h))
    h = jax.nn.sigmoid(_pre(params, "o", x, h)) * jnp.tanh(c)
    return {"c": c, "h": h}, h


CELLS = {
    "indrnn": lambda: _cell([""], _indrnn_step),
    "para_gru": lambda: _cell(["z", "r", "n"], _para_gru_step),
    "para_lstm": lambda: _cell(["f", "g", "o"], _para_lstm_step, ("c", "h")),
}


def _setup(cell, time, dtype=jnp.float32, seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    params = cell.init(keys[0], F, dtype)
    xs = jax.random.normal(keys[1], (B, time, F), dtype)
    lengths = jnp.array([time, 0, time // 3])
    carry = jax.tree.map(
        lambda a: 0.5 * jax.random.normal(keys[2], a.shape, dtype), cell.initial_carry(params, B)
    )
    return params, xs, lengths, carry


def _close(a, b, atol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


# The library's own diagonal cells, beside the stand-ins above.
LIBRARY = {
    "rnnjax.indrnn": lambda: rnnjax.indrnn(H),
    "rnnjax.para_gru": lambda: rnnjax.para_gru(H),
    "rnnjax.para_lstm": lambda: rnnjax.para_lstm(H),
}


@pytest.mark.parametrize("name", sorted(CELLS) + sorted(LIBRARY))
def test_newton_equals_sequential_long(name):
    """T=4096, lengths (4096, 0, 1365), reverse, an initial carry: Newton within the
    tolerance (forward order: ``test_resets_and_time_major``)."""
    cell = {**CELLS, **LIBRARY}[name]()
    params, xs, lengths, carry = _setup(cell, 4096)
    kwargs = dict(initial_carry=carry, seq_lengths=lengths, reverse=True)
    expected = rnnjax.rnn(cell, params, xs, parallel=False, **kwargs)
    final, ys, info = jax.jit(lambda p, x: rnnjax.newton_rnn(cell, p, x, **kwargs))(params, xs)
    assert bool(info.converged) and float(info.residual) <= 1e-4
    assert 1 <= int(info.iterations) <= 20
    _close((final, ys), expected, atol=1e-4)
    assert bool((ys[1] == 0).all()) and bool((ys[2, 4096 // 3 :] == 0).all())
    _close(jax.tree.map(lambda a: a[1], final), jax.tree.map(lambda a: a[1], carry), atol=0)
    via_rnn = rnnjax.rnn(cell, params, xs, parallel="newton", **kwargs)
    _close(via_rnn, (final, ys), atol=1e-6)


@pytest.mark.parametrize("name", ["gru", "lstm", "gru_reset_before"])
def test_quasi_newton_dense_cells(name):
    """The dense built-in cells by quasi-Newton (the diagonal of their Jacobian): from the
    gate split (gru, lstm), and by ``jax.jacfwd`` for a cell without one."""
    cell = (
        rnnjax.gru(H, reset_after=False) if name == "gru_reset_before" else getattr(rnnjax, name)(H)
    )
    params, xs, lengths, carry = _setup(cell, 4096)
    kwargs = dict(initial_carry=carry, seq_lengths=lengths, reverse=True)
    expected = rnnjax.rnn(cell, params, xs, parallel=False, **kwargs)
    final, ys, info = jax.jit(lambda p, x: rnnjax.newton_rnn(cell, p, x, quasi=True, **kwargs))(
        params, xs
    )
    assert bool(info.converged), info
    _close((final, ys), expected, atol=1e-4)


def test_fallback_fires_at_the_cap():
    """Two iterations cannot converge at T=64: the sequential scan's result, reported."""
    cell = CELLS["para_gru"]()
    params, xs, lengths, _ = _setup(cell, 64)
    expected = rnnjax.rnn(cell, params, xs, seq_lengths=lengths, parallel=False)
    final, ys, info = rnnjax.newton_rnn(cell, params, xs, seq_lengths=lengths, max_iterations=2)
    assert not bool(info.converged) and int(info.iterations) == 2
    assert float(info.residual) > 1e-4
    _close((final, ys), expected, atol=1e-6)


def test_diverging_quasi_newton_falls_back_and_damping_converges():
    """A tanh RNN with a large recurrent kernel at T=2048: undamped quasi-Newton overflows in
    its first iteration (the fallback fires at once), ELK's damping converges."""
    cell = rnnjax.simple_rnn(H)
    params = cell.init(jax.random.key(0), F)
    params = params._replace(recurrent_kernel=2.5 * params.recurrent_kernel)
    xs = jax.random.normal(jax.random.key(1), (B, 2048, F))
    expected = rnnjax.rnn(cell, params, xs, parallel=False)
    plain = rnnjax.newton_rnn(cell, params, xs, quasi=True)
    assert not bool(plain[2].converged) and int(plain[2].iterations) == 1
    assert not np.isfinite(float(plain[2].residual))
    _close(plain[:2], expected, atol=1e-6)
    damped = rnnjax.newton_rnn(cell, params, xs, quasi=True, damping=0.1, max_iterations=300)
    assert bool(damped[2].converged), damped[2]
    _close(damped[:2], expected, atol=1e-3)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_resets_and_time_major(name):
    cell = CELLS[name]()
    params, xs, lengths, carry = _setup(cell, 40, seed=1)
    resets = jax.random.bernoulli(jax.random.key(5), 0.1, xs.shape[:2])
    xs_t = jnp.swapaxes(xs, 0, 1)
    kwargs = dict(initial_carry=carry, seq_lengths=lengths, resets=resets.T, time_major=True)
    expected = rnnjax.rnn(cell, params, xs_t, parallel=False, **kwargs)
    _close(rnnjax.rnn(cell, params, xs_t, parallel="newton", **kwargs), expected, atol=1e-5)


def test_vmap_jvp_and_no_steps():
    """``jax.vmap`` and ``jax.jvp`` of ``parallel="newton"`` against the sequential scan's,
    and a sequence of no steps."""
    cell = CELLS["para_gru"]()
    params, xs, lengths, _ = _setup(cell, 40, seed=1)

    def run(parallel, xs, lengths):
        return rnnjax.rnn(cell, params, xs, seq_lengths=lengths, parallel=parallel)[1]

    one = lambda x, n: run("newton", x[None], n[None])[0]  # noqa: E731
    _close(jax.vmap(one)(xs, lengths), run(False, xs, lengths), atol=1e-4)
    tangent = jnp.ones_like(xs)
    got = jax.jvp(lambda x: run("newton", x, lengths), (xs,), (tangent,))
    want = jax.jvp(lambda x: run(False, x, lengths), (xs,), (tangent,))
    _close(got, want, atol=1e-4)
    final, ys = rnnjax.rnn(cell, params, xs[:, :0], parallel="newton")
    assert ys.shape == (B, 0, H) and bool((final == 0).all())


def _loss(cell, parallel, directions=(False, True), **options):
    """Of the outputs and final carries in ``directions`` (reverse or not; lengths 12, 0, 5)."""

    def run(params, xs, carry, reverse):
        kwargs = dict(initial_carry=carry, seq_lengths=jnp.array([12, 0, 5]), reverse=reverse)
        if parallel == "quasi":
            return rnnjax.newton_rnn(cell, params, xs, quasi=True, **kwargs, **options)[:2]
        return rnnjax.rnn(cell, params, xs, parallel=parallel, **kwargs)

    def loss(params, xs, carry):
        total = 0.0
        for reverse in directions:
            final, ys = run(params, xs, carry, reverse)
            weights = jnp.arange(ys.shape[1], dtype=ys.dtype)[None, :, None]
            total += jnp.sum(ys**2 * weights) + sum(
                jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(final)
            )
        return total

    return loss


@pytest.mark.parametrize("name", ["indrnn", "para_lstm", "gru"])
def test_gradients_match_sequential(name):
    """Implicit differentiation equals autodiff of the sequential scan (float64)."""
    with jax.enable_x64(True):
        cell = CELLS[name]() if name in CELLS else rnnjax.gru(H)
        params, xs, _, carry = _setup(cell, 12, jnp.float64)
        newton = "newton" if name in CELLS else "quasi"
        expected = jax.jit(jax.grad(_loss(cell, False), argnums=(0, 1, 2)))
        got = jax.jit(jax.grad(_loss(cell, newton), argnums=(0, 1, 2)))
        args = (params, xs, carry)
        _close(got(*args), expected(*args), atol=1e-6)  # the forward pass is exact to 1e-7


def test_check_grads():
    """Forward and reverse mode (2x2 blocks), and second order (one-array carry)."""
    with jax.enable_x64(True):
        cell = CELLS["para_lstm"]()
        params, xs, _, carry = _setup(cell, 12, jnp.float64)
        loss = jax.jit(_loss(cell, "newton", (True,)))
        check_grads(loss, (params, xs, carry), order=1, modes=["fwd", "rev"], eps=1e-5)
        cell = CELLS["indrnn"]()
        params, xs, _, carry = _setup(cell, 12, jnp.float64)
        loss = jax.jit(_loss(cell, "newton", (False,)))
        check_grads(lambda x: loss(params, x, carry), (xs,), order=2, modes=["rev"], eps=1e-4)


def test_errors():
    gru = rnnjax.gru(H)
    params, xs, _, _ = _setup(gru, 8)
    with pytest.raises(
        ValueError, match=r'rnnjax.rnn: parallel="newton" needs .*diagonal_jacobian'
    ):
        rnnjax.rnn(gru, params, xs, parallel="newton")
    with pytest.raises(
        TypeError, match=r"rnnjax.rnn: parallel must be None, True, False or 'newton'"
    ):
        rnnjax.rnn(gru, params, xs, parallel="deer")
    cell = CELLS["indrnn"]()
    params, xs, _, _ = _setup(cell, 8)
    with pytest.raises(ValueError, match=r'rnnjax.rnn: parallel="newton" does not take remat'):
        rnnjax.rnn(cell, params, xs, parallel="newton", remat=True)
    with pytest.raises(ValueError, match=r"rnnjax.newton_rnn: damping applies to quasi-Newton"):
        rnnjax.newton_rnn(cell, params, xs, damping=1.0)
    with pytest.raises(ValueError, match=r"rnnjax.newton_rnn: tolerance must be a number >= 0"):
        rnnjax.newton_rnn(cell, params, xs, tolerance=-1.0)
    with pytest.raises(ValueError, match=r"rnnjax.newton_rnn: max_iterations must be >= 1"):
        rnnjax.newton_rnn(cell, params, xs, max_iterations=0)
    with pytest.raises(TypeError, match=r"rnnjax.newton_rnn: quasi must be a bool"):
        rnnjax.newton_rnn(cell, params, xs, quasi=1)


def test_parallel_none_is_sequential_on_cpu():
    cell = CELLS["indrnn"]()
    params, xs, _, _ = _setup(cell, 8)
    assert not rnnjax._src.newton.entry.default_newton(cell, 1 << 20)
    jaxpr = str(jax.make_jaxpr(lambda x: rnnjax.rnn(cell, params, x))(xs))
    assert "while" not in jaxpr
