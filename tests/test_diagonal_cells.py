"""The diagonal cells (IndRNN, ParaGRU, ParaLSTM) and the linear ones (LRU, RG-LRU): what the
shared tests over ``CASES`` do not cover."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from tests import reference
from tests.cells_under_test import CASES, random_carry, random_params, to_float64

NONLINEAR = [case for case in CASES if case.cell.diagonal_jacobian is not None]
LINEAR = [case for case in CASES if case.name in ("lru", "rg_lru")]


def test_the_nonlinear_diagonal_cells_have_the_capability():
    assert [case.name for case in NONLINEAR] == ["indrnn", "para_gru", "para_lstm"]
    assert all(case.cell.linear_scan is None for case in NONLINEAR)
    assert all(case.cell.gate_split is not None for case in NONLINEAR)  # the fast backward


@pytest.mark.parametrize("case", NONLINEAR, ids=lambda case: case.name)
def test_jacobian_step_is_the_step_and_the_exact_jacobian_blocks(case):
    params = random_params(case, jax.random.key(0), input_size=3)
    carry = random_carry(case, jax.random.key(1), (2,))
    x = jax.random.normal(jax.random.key(2), (2, 3))
    (new, y), blocks = case.cell.diagonal_jacobian.step(params, carry, x)
    jax.tree.map(np.testing.assert_array_equal, (new, y), case.cell.step(params, carry, x))

    def stacked_step(carry):
        return jnp.stack(jax.tree.leaves(case.cell.step(params, carry, x)[0]), axis=-1)

    # The full Jacobian [batch, H, k, (k leaves of) batch, H]: each leaf's derivative.
    full = jax.tree.leaves(jax.jacfwd(stacked_step)(carry))
    k = case.carry_arrays
    dense = jnp.stack(full, axis=-1)  # [b, u, i, b', u', j]
    eye_b, eye_u = jnp.eye(2), jnp.eye(5)
    want = jnp.einsum("buibvj,bv->buij", dense, jnp.ones((2, 5)))  # the sum over u' = u only
    same = eye_b[:, None, None, :, None, None] * eye_u[None, :, None, None, :, None]
    off_blocks = dense * (1 - same)
    assert blocks.shape == (2, 5, k, k)
    np.testing.assert_array_equal(off_blocks, 0)  # no unit reads another
    np.testing.assert_allclose(blocks, want, rtol=1e-6, atol=1e-7)


def test_para_gru_is_a_gru_with_diagonal_recurrent_blocks():
    case = next(case for case in CASES if case.name == "para_gru")
    params = random_params(case, jax.random.key(0), input_size=3)
    blocks = params.recurrent_weight.reshape(3, 5)
    dense = rnnjax.GRUParams(
        params.kernel,
        jnp.concatenate([jnp.diag(a) for a in blocks], axis=1),
        params.bias,
        jnp.zeros(15),
    )
    xs = jax.random.normal(jax.random.key(1), (2, 7, 3))
    want = rnnjax.rnn(rnnjax.gru(5), dense, xs)
    got = rnnjax.rnn(case.cell, params, xs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), got, want)


@pytest.mark.parametrize("case", LINEAR, ids=lambda case: case.name)
def test_parallel_equals_sequential_with_lengths_reverse_resets_and_a_carry(case):
    params = random_params(case, jax.random.key(0), input_size=3)
    xs = jax.random.normal(jax.random.key(1), (3, 40, 3))
    options = dict(
        initial_carry=random_carry(case, jax.random.key(2), (3,)),
        seq_lengths=jnp.array([40, 0, 17]),
        resets=jnp.zeros((3, 40), bool).at[0, 9].set(True),
    )
    for reverse in (False, True):
        parallel = rnnjax.rnn(case.cell, params, xs, reverse=reverse, **options)
        sequential = rnnjax.rnn(case.cell, params, xs, reverse=reverse, parallel=False, **options)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), parallel, sequential)


def test_lru_ring_initialisation():
    params = rnnjax.lru(4000, r_min=0.4, r_max=0.9, max_phase=np.pi / 2).init(jax.random.key(0), 8)
    radius = np.exp(-np.exp(np.asarray(params.nu_log, np.float64)))
    phase = np.exp(np.asarray(params.theta_log, np.float64))
    assert radius.min() >= 0.4 - 1e-6 and radius.max() <= 0.9 + 1e-6
    # Uniform by area: radius^2 uniform on [0.16, 0.81], so its mean is their midpoint.
    np.testing.assert_allclose(np.mean(radius**2), (0.16 + 0.81) / 2, atol=0.01)
    assert phase.min() >= 0 and phase.max() <= np.pi / 2
    np.testing.assert_allclose(np.mean(phase), np.pi / 4, atol=0.03)
    gamma = np.exp(np.asarray(params.gamma_log, np.float64))
    np.testing.assert_allclose(gamma, np.sqrt(1 - radius**2), rtol=1e-4)
    np.testing.assert_allclose(np.var(params.b_real), 1 / 16, rtol=0.05)  # complex N(0, 1/I)


def test_rg_lru_ring_initialisation_and_gate_scale():
    params = rnnjax.rg_lru(4000).init(jax.random.key(0), 8)
    a = reference.sigmoid(-np.asarray(params.a_param, np.float64))
    assert a.min() >= 0.9 - 1e-6 and a.max() <= 0.999 + 1e-6
    np.testing.assert_allclose(np.mean(a**2), (0.81 + 0.998001) / 2, atol=0.01)


def test_recurrentgemma_rg_lru_params_convert_and_follow_the_equations():
    # recurrentgemma's RGLRU(width=4, num_heads=2): a_param [4], input_gate and a_gate
    # BlockDiagonalLinear with w [heads, 2, 2] and b [heads, 2].
    rng = np.random.default_rng(0)
    tree = {
        "a_param": rng.normal(size=4),
        "input_gate": {"w": rng.normal(size=(2, 2, 2)), "b": rng.normal(size=(2, 2))},
        "a_gate": {"w": rng.normal(size=(2, 2, 2)), "b": rng.normal(size=(2, 2))},
    }
    tree = jax.tree.map(lambda a: a.astype(np.float32).astype(np.float64), tree)  # exact in f32
    params = rnnjax.interop.rg_lru_params_from_recurrentgemma(jax.tree.map(jnp.asarray, tree))
    h, x = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))

    def block_linear(block, x):  # recurrentgemma's BlockDiagonalLinear, in NumPy
        heads = x.reshape(3, 2, 2)
        return (np.einsum("bhi,hij->bhj", heads, block["w"]) + block["b"]).reshape(3, 4)

    gate_x = reference.sigmoid(block_linear(tree["input_gate"], x))
    log_a = (
        -8.0 * reference.sigmoid(block_linear(tree["a_gate"], x)) * np.logaddexp(0, tree["a_param"])
    )
    a = np.exp(log_a)
    want = a * h + np.sqrt(1 - a**2) * (x * gate_x)
    got, _ = rnnjax.rg_lru(4).step(params, jnp.asarray(h, jnp.float32), jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        reference.rg_lru_step(to_float64(params._asdict()), h, x), want, rtol=1e-12
    )


def test_step_decodes_one_token_at_a_time():
    cell = rnnjax.para_gru(6)
    key_embed, key_cell, key_out = jax.random.split(jax.random.key(0), 3)
    params = {
        "embed": jax.random.normal(key_embed, (10, 4)),
        "cell": cell.init(key_cell, 4),
        "out": jax.random.normal(key_out, (6, 10)),
    }

    def step_fn(params, carry, tokens):
        carry, h = cell.step(params["cell"], carry, params["embed"][tokens])
        return carry, h @ params["out"]

    carry = cell.initial_carry(params["cell"], 2)
    decoded = rnnjax.decode(step_fn, params, carry, jnp.array([1, 2]), max_length=5)
    # Greedy: feeding the decoded tokens back through rnn gives the same choices.
    inputs = params["embed"][jnp.concatenate([jnp.array([[1], [2]]), decoded.tokens[:, :-1]], 1)]
    _, hs = rnnjax.rnn(cell, params["cell"], inputs)
    np.testing.assert_array_equal(jnp.argmax(hs @ params["out"], -1), decoded.tokens)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: rnnjax.lru(4, r_min=0.9, r_max=0.5), r"rnnjax.lru: need 0 <= r_min < r_max"),
        (lambda: rnnjax.lru(4, max_phase=0.0), r"rnnjax.lru: max_phase must be positive; got 0"),
        (lambda: rnnjax.para_gru(0), r"rnnjax.para_gru: hidden_size must be an int >= 1; got 0"),
    ],
)
def test_bad_settings(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_params_of_another_cell_are_refused_by_name_and_shapes():
    gru_params = rnnjax.gru(4).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"rnnjax.para_gru\(4\): params must be DiagonalParams\("):
        rnnjax.rnn(rnnjax.para_gru(4), gru_params, jnp.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"rnnjax.rg_lru\(4\): params must be RGLRUParams\(ke"):
        rnnjax.rnn(rnnjax.rg_lru(4), gru_params, jnp.zeros((1, 2, 3)))
    lru_params = rnnjax.lru(3).init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"rnnjax.lru\(4\): params must be LRUParams\(nu_log="):
        rnnjax.rnn(rnnjax.lru(4), lru_params, jnp.zeros((1, 2, 2)))
    bad = {"w": jnp.ones((2, 2, 3)), "b": jnp.zeros((2, 3))}
    with pytest.raises(ValueError, match=r"a gate must be .* with W = 4 .*; got w \(2, 2, 3\)"):
        rnnjax.interop.rg_lru_params_from_recurrentgemma(
            {"a_param": jnp.zeros(4), "input_gate": bad, "a_gate": bad}
        )


def test_rg_lru_gradients_stay_finite_as_a_approaches_one():
    cell = rnnjax.rg_lru(3)
    params = cell.init(jax.random.key(0), 3)._replace(a_param=jnp.full((3,), -30.0))
    grads = jax.grad(lambda p: rnnjax.rnn(cell, p, jnp.ones((1, 4, 3)))[1].sum())(params)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
