"""Cells: one step against float64 references, initialisers, params as pytrees."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from tests.cells_under_test import (
    CASE_IDS,
    CASES,
    carry_arrays,
    random_carry,
    random_params,
    reference_step,
)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_step_matches_float64_reference(case):
    key = jax.random.key(0)
    params = random_params(case, key, input_size=3)
    carry = random_carry(case, jax.random.key(1), (4,))
    x = jax.random.normal(jax.random.key(2), (4, 3))
    new_carry, y = case.cell.step(params, carry, x)
    want = reference_step(case, params, carry, x)
    for got, expected in zip(carry_arrays(new_carry), want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y, carry_arrays(new_carry)[0])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_step_equals_its_split(case):
    params = random_params(case, jax.random.key(0), input_size=3)
    carry = random_carry(case, jax.random.key(1), (2, 4))
    x = jax.random.normal(jax.random.key(2), (2, 4, 3))
    direct = case.cell.step(params, carry, x)
    if case.cell.linear_scan is not None:  # minGRU, minLSTM, the LRUs: h' = a * h + b
        a, b = case.cell.linear_scan.coefficients(params, x)
        if jnp.iscomplexobj(a):  # the LRU: the carry is [Re h, Im h]
            h = a * jax.lax.complex(*jnp.split(carry, 2, axis=-1)) + b
            split = (jnp.concatenate([h.real, h.imag], axis=-1),) * 2
        else:
            split = (a * carry + b,) * 2
    else:
        projection = case.cell.projection
        split = projection.step(params, carry, projection.project(params, x), None)
    jax.tree.map(np.testing.assert_array_equal, direct, split)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_step_has_scan_signature(case):
    params = random_params(case, jax.random.key(0), input_size=3)
    xs = jax.random.normal(jax.random.key(1), (6, 2, 3))
    carry0 = case.cell.initial_carry(params, 2)
    scanned = jax.lax.scan(lambda c, x: case.cell.step(params, c, x), carry0, xs)
    carry, ys = carry0, []
    for x in xs:
        carry, y = case.cell.step(params, carry, x)
        ys.append(y)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6)
    jax.tree.map(close, scanned, (carry, jnp.stack(ys)))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_params_are_plain_pytrees_of_arrays(case, dtype):
    params = case.cell.init(jax.random.key(0), 7, dtype)
    gates = case.gates
    if isinstance(params, rnnjax.DiagonalParams):
        assert params.recurrent_weight.shape == (gates * 5,)  # a vector, not a matrix
    elif isinstance(params, rnnjax.LRUParams):
        assert params.b_real.shape == params.b_imag.shape == (7, 5)
    elif case.cell.linear_scan is None:
        assert params.recurrent_kernel.shape == (5, gates * 5)
    else:
        assert params._fields[:2] == ("kernel", "bias")  # gates read x only
    if gates:
        assert params.kernel.shape == (7, gates * 5)
        assert params.bias.shape == (gates * 5,)
    assert all(
        isinstance(leaf, jax.Array) and leaf.dtype == dtype for leaf in jax.tree.leaves(params)
    )
    doubled = jax.jit(lambda p: jax.tree.map(lambda a: 2 * a, p))(params)
    assert type(doubled) is type(params)


def test_gru_reset_before_has_one_bias_and_reset_after_two():
    before = rnnjax.gru(4, reset_after=False).init(jax.random.key(0), 3)
    after = rnnjax.gru(4).init(jax.random.key(0), 3)
    assert before.recurrent_bias is None
    assert after.recurrent_bias.shape == (12,)


def test_keras_initialiser():
    hidden, inputs = 64, 48
    params = rnnjax.lstm(hidden).init(jax.random.key(0), inputs)
    limit = np.sqrt(6 / (inputs + 4 * hidden))  # Glorot-uniform over the whole [I, 4H] kernel
    assert np.abs(params.kernel).max() <= limit
    assert np.abs(params.kernel).max() > 0.9 * limit
    u = np.asarray(params.recurrent_kernel)  # [H, 4H] with orthonormal rows
    np.testing.assert_allclose(u @ u.T, np.eye(hidden), atol=1e-5)
    bias = np.asarray(params.bias).reshape(4, hidden)
    np.testing.assert_array_equal(
        bias, np.stack([np.zeros(hidden), np.ones(hidden), *[np.zeros(hidden)] * 2])
    )


def test_torch_initialiser():
    hidden = 256
    params = rnnjax.lstm(hidden, initializer="torch").init(jax.random.key(0), 32)
    bound = 1 / np.sqrt(hidden)
    for w in (params.kernel, params.recurrent_kernel):
        assert np.abs(w).max() <= bound
        np.testing.assert_allclose(np.var(w), bound**2 / 3, rtol=0.05)  # U(-a, a)
    # One bias standing for PyTorch's b_ih + b_hh: the sum of two uniforms, variance doubled.
    np.testing.assert_allclose(np.var(params.bias), 2 * bound**2 / 3, rtol=0.1)
    assert np.abs(params.bias).max() <= 2 * bound


def test_flax_initialiser():
    hidden, inputs = 32, 400
    params = rnnjax.gru(hidden, initializer="flax").init(jax.random.key(0), inputs)
    np.testing.assert_allclose(np.var(params.kernel), 1 / inputs, rtol=0.1)  # LeCun normal
    for gate in np.split(np.asarray(params.recurrent_kernel), 3, axis=1):
        np.testing.assert_allclose(gate @ gate.T, np.eye(hidden), atol=1e-5)
    assert not np.asarray(params.bias).any() and not np.asarray(params.recurrent_bias).any()


def test_equal_settings_give_the_same_cell():
    assert rnnjax.lstm(8) is rnnjax.lstm(8)
    assert rnnjax.lstm(8) is rnnjax.lstm(hidden_size=8, initializer="keras")  # however spelled
    assert rnnjax.gru(8, False) is rnnjax.gru(8, reset_after=False)
    assert rnnjax.gru(8, reset_after=False) is not rnnjax.gru(8)
    assert rnnjax.simple_rnn(8, jax.nn.relu) is not rnnjax.simple_rnn(8)


@pytest.mark.parametrize("factory", [rnnjax.lstm, rnnjax.gru, rnnjax.simple_rnn])
def test_bad_cell_arguments(factory):
    where = f"rnnjax.{factory.__name__}"
    with pytest.raises(ValueError, match=rf"{where}: hidden_size must be an int >= 1; got 0"):
        factory(0)
    factory(2)  # the per-setting cache is consulted only after the checks
    for bad in (2.0, 2.5, True, "2", None):
        with pytest.raises(TypeError, match=rf"{where}: hidden_size must be an int >= 1; got"):
            factory(bad)
    with pytest.raises(
        ValueError, match=r"initializer must be one of \('keras', 'torch', 'flax'\); got 'he'"
    ):
        factory(4, initializer="he")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_initial_carry(case):
    params = case.cell.init(jax.random.key(0), 3, jnp.bfloat16)
    carry = case.cell.initial_carry(params, (2, 3))
    assert all(
        a.shape == (2, 3, case.width) and a.dtype == jnp.bfloat16 and not a.any()
        for a in carry_arrays(carry)
    )
    carry = case.cell.initial_carry(params, 4, jnp.float32)
    assert all(a.shape == (4, case.width) and a.dtype == jnp.float32 for a in carry_arrays(carry))
