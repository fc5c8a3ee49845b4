"""The public cell kit: a user's cell built with it runs everywhere, ``rnnjax.check_cell``
catches a capability that disagrees with the step, and every built-in kind passes it; cells
refuse params of another type and factories bad settings, by name (issue 32).

The user cell is the coupled-gate LSTM (CIFG, Greff et al. 2017: input gate ``1 - f``), its
params a dict, checked against a float64 NumPy loop of its equations.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnjax
import rnnjax.linen
import rnnjax.nnx
from rnnjax._src.cells.registry import CELL_KINDS

BATCH, TIME, FEATURES, HIDDEN = 2, 5, 3, 4
XS = jax.random.normal(jax.random.key(1), (BATCH, TIME, FEATURES))
SHORT = XS[:, :3]
close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)


# --- The coupled-gate LSTM, as a user writes it with the kit ---------------------------------


def _row(vector, like):
    """``vector [n]`` shaped to broadcast against ``like [..., n]`` (no rank promotion)."""
    return vector.reshape((1,) * (like.ndim - 1) + vector.shape)


def cifg_init(hidden, key, input_size, dtype=jnp.float32):
    k_w, k_u, k_b = jax.random.split(key, 3)
    return {
        "w": jax.random.normal(k_w, (input_size, 3 * hidden), dtype) * 0.5,
        "u": jax.random.normal(k_u, (hidden, 3 * hidden), dtype) * 0.5,
        "b": jax.random.normal(k_b, (3 * hidden,), dtype) * 0.1,
    }


def cifg_carry(hidden, params, batch_shape, dtype=None):
    shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
    zeros = jnp.zeros((*shape, hidden), dtype or params["u"].dtype)
    return rnnjax.LSTMState(zeros, zeros)


def cifg_project(params, xs):
    z = xs @ params["w"]
    return z + _row(params["b"], z)


def cifg_gates(params, carry, z, *, wrong=False):
    f, g, o = jnp.split(z, 3, axis=-1)
    f = jax.nn.sigmoid(f)
    i = jax.nn.sigmoid(g) if wrong else 1 - f  # wrong: one gate off
    c = f * carry.c + i * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return rnnjax.LSTMState(h, c), h


@rnnjax.cell_factory
def cifg_lstm(hidden_size: int) -> rnnjax.Cell:
    return rnnjax.gated_cell(
        init=functools.partial(cifg_init, hidden_size),
        initial_carry=functools.partial(cifg_carry, hidden_size),
        input_size=lambda params: params["w"].shape[0],
        output=lambda carry: carry.h,
        recurrent=lambda params, h: h @ params["u"],
        combine=jnp.add,
        gates=cifg_gates,
        project=cifg_project,
    )


CIFG = cifg_lstm(HIDDEN)
CIFG_PARAMS = CIFG.init(jax.random.key(0), FEATURES)


def cifg_reference(params, xs):
    """The CIFG equations as a float64 NumPy loop: ``ys [batch, time, hidden]``."""
    w, u, b = (np.asarray(params[name], np.float64) for name in ("w", "u", "b"))
    xs = np.asarray(xs, np.float64)
    h = c = np.zeros((xs.shape[0], u.shape[0]))
    ys = []
    for t in range(xs.shape[1]):
        f, g, o = np.split(xs[:, t] @ w + h @ u + b, 3, axis=-1)
        f = 1 / (1 + np.exp(-f))
        c = f * c + (1 - f) * np.tanh(g)
        h = np.tanh(c) / (1 + np.exp(-o))
        ys.append(h)
    return np.stack(ys, axis=1)


def test_the_user_cell_passes_check_cell_with_gate_split():
    carry = jax.tree.map(lambda a: a + 0.3, CIFG.initial_carry(CIFG_PARAMS, BATCH))
    checked = rnnjax.check_cell(CIFG, CIFG_PARAMS, SHORT, carry=carry)
    assert checked == ("contract", "projection", "gate_split")


def test_the_user_cell_runs_through_rnn_and_layer_as_its_equations():
    want = cifg_reference(CIFG_PARAMS, XS)
    close(rnnjax.rnn(CIFG, CIFG_PARAMS, XS)[1], want)
    layer = rnnjax.layer(CIFG)
    close(layer.apply(CIFG_PARAMS, XS)[1], want)
    # The fast backward pass (gate_split) gives the gradient a loop over cell.step gives.
    plain = rnnjax.Cell(*CIFG[:5])

    def loss(cell, params):
        return jnp.sum(rnnjax.rnn(cell, params, XS)[1] ** 2)

    grads = jax.grad(functools.partial(loss, CIFG))(CIFG_PARAMS)
    jax.tree.map(close, grads, jax.grad(functools.partial(loss, plain))(CIFG_PARAMS))


def test_the_user_cell_runs_in_the_flax_modules_as_its_equations():
    module = rnnjax.nnx.RNN(CIFG, FEATURES, return_sequences=True, rngs=nnx.Rngs(0))
    close(module(XS), cifg_reference(module.params, XS))
    linen = rnnjax.linen.RNN(CIFG, return_sequences=True)
    variables = linen.init(jax.random.key(0), XS)
    close(linen.apply(variables, XS), cifg_reference(variables["params"]["cell"], XS))


def test_one_wrong_gate_fails_check_cell_naming_gate_split():
    wrong = CIFG.gate_split._replace(gates=functools.partial(cifg_gates, wrong=True))
    with pytest.raises(
        rnnjax.CellCheckError,
        match=r"rnnjax.check_cell: gate_split disagrees with step: max \|difference\| [\d.e-]+"
        r" in the carry.(h|c) \(at index \(\d, \d\).*time step 0, values",
    ):
        rnnjax.check_cell(CIFG._replace(gate_split=wrong), CIFG_PARAMS, SHORT)


def test_a_wrong_linear_scan_fails_naming_it():
    cell = rnnjax.min_gru(HIDDEN)
    params = cell.init(jax.random.key(0), FEATURES)
    coefficients = cell.linear_scan.coefficients

    def off(params, xs):  # b one tenth off
        a, b = coefficients(params, xs)
        return a, b * 1.1

    with pytest.raises(rnnjax.CellCheckError, match=r"linear_scan disagrees with step: max"):
        rnnjax.check_cell(cell._replace(linear_scan=rnnjax.LinearScan(off)), params, SHORT)


def test_a_wrong_diagonal_jacobian_fails_naming_it():
    cell = rnnjax.para_gru(HIDDEN)
    params = cell.init(jax.random.key(0), FEATURES)
    jacobian_step = cell.diagonal_jacobian.step

    def doubled(params, carry, x):
        result, jacobian = jacobian_step(params, carry, x)
        return result, 2 * jacobian

    wrong = cell._replace(diagonal_jacobian=rnnjax.DiagonalJacobian(doubled))
    with pytest.raises(
        rnnjax.CellCheckError,
        match=r"diagonal_jacobian disagrees with step: .* jacobian against jax.jacfwd of step",
    ):
        rnnjax.check_cell(wrong, params, SHORT)


def test_a_jacobian_claimed_for_a_step_that_mixes_units_fails():
    # The LSTM's recurrent matmul mixes the units: its Jacobian is not block-diagonal.
    cell = rnnjax.lstm(HIDDEN)
    params = cell.init(jax.random.key(0), FEATURES)
    claimed = cell._replace(diagonal_jacobian=rnnjax.diagonal_jacobian_of(cell.step))
    with pytest.raises(rnnjax.CellCheckError, match=r"diagonal_jacobian disagrees with step"):
        rnnjax.check_cell(claimed, params, SHORT)


def test_a_contract_breach_is_named():
    def step(params, carry, x):
        new, y = CIFG.step(params, carry, x)
        return new, 2 * y  # y is not output(carry)

    with pytest.raises(rnnjax.CellCheckError, match=r"output disagrees with step"):
        rnnjax.check_cell(CIFG._replace(step=step), CIFG_PARAMS, SHORT)
    with pytest.raises(ValueError, match=r"rnnjax.check_cell: xs must have shape \[\*batch,"):
        rnnjax.check_cell(CIFG, CIFG_PARAMS, SHORT[..., :2])


KINDS = {name: kind.make(HIDDEN) for name, kind in CELL_KINDS.items()}
KINDS["lstm(peephole=True)"] = rnnjax.lstm(HIDDEN, peephole=True)
KINDS["gru(reset_after=False)"] = rnnjax.gru(HIDDEN, reset_after=False)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_builtin_kind_passes_check_cell(name):
    cell = KINDS[name]
    params = cell.init(jax.random.key(0), FEATURES)
    if name == "lstm(peephole=True)":
        params = params._replace(peephole=jnp.full_like(params.peephole, 0.3))
    carry = jax.tree.map(lambda a: a + 0.2, cell.initial_carry(params, BATCH))
    checked = rnnjax.check_cell(cell, params, SHORT, carry=carry)
    capabilities = ("projection", "gate_split", "linear_scan", "diagonal_jacobian")
    assert checked == ("contract", *(c for c in capabilities if getattr(cell, c) is not None))


def test_gate_split_without_projection_is_refused_when_the_cell_is_made():
    message = r"rnnjax.Cell: gate_split needs projection .* got gate_split and projection=None"
    with pytest.raises(ValueError, match=message):
        rnnjax.Cell(*CIFG[:5], gate_split=CIFG.gate_split)
    with pytest.raises(ValueError, match=message):
        CIFG._replace(projection=None)


def test_a_rebuilt_cell_compiles_nothing_new():
    traces = []

    def counted(params, carry, z):
        traces.append(1)
        return cifg_gates(params, carry, z)

    def build(hidden_size):
        cell = cifg_lstm(hidden_size)
        return cell._replace(gate_split=cell.gate_split._replace(gates=counted))

    cached = rnnjax.cell_factory(build)
    run = jax.jit(lambda cell, params, xs: rnnjax.rnn(cell, params, xs)[1], static_argnums=0)
    first = run(cached(HIDDEN), CIFG_PARAMS, XS)
    compiled = len(traces)
    second = run(cached(HIDDEN), CIFG_PARAMS, XS)
    assert compiled > 0 and len(traces) == compiled  # the same cell: no trace, no compile
    np.testing.assert_array_equal(first, second)
    run(build(HIDDEN), CIFG_PARAMS, XS)  # built anew without the factory: traced again
    assert len(traces) > compiled


def test_cell_factory_checks_its_settings_under_its_name():
    @rnnjax.cell_factory
    def leaky(hidden_size, *, leak=0.5):
        return cifg_lstm(hidden_size)

    assert leaky(HIDDEN, leak=1) is leaky(HIDDEN, leak=1.0)
    with pytest.raises(TypeError, match=r"^leaky: leak must be a real number .*got 'a'"):
        leaky(HIDDEN, leak="a")
    with pytest.raises(TypeError, match=r"^leaky: hidden_size must be an int >= 1; got 2.0"):
        leaky(2.0)

    @rnnjax.cell_factory
    def sized(width, scale):  # no defaults: any hashable value
        return cifg_lstm(HIDDEN)

    assert sized(3, scale=2) is sized(3, 2)
    with pytest.raises(TypeError, match=r"^sized: scale must be a hashable Python value"):
        sized(3, jnp.ones(2))


# --- Issue 32's leftovers on cells, pinned (the fuzz is in tests/test_bad_input.py) ---------

KEY = jax.random.key(0)
LN_PARAMS = rnnjax.layer_norm_lstm(HIDDEN).init(KEY, FEATURES)
PEEPHOLE_PARAMS = rnnjax.lstm(HIDDEN, peephole=True).init(KEY, FEATURES)
LSTM4 = rnnjax.lstm(HIDDEN)
NOT_LSTM_PARAMS = r"params must be LSTMParams\(kernel=\[input_size, 16\].*; got {}Params with"
CELL_LEFTOVERS = {
    "layer_norm_params_into_lstm": (
        lambda: rnnjax.rnn(LSTM4, LN_PARAMS, XS),
        ValueError,
        r"rnnjax.rnn: params are not this cell's: rnnjax.lstm\(4\): "
        + NOT_LSTM_PARAMS.format("LayerNormLSTM"),
    ),
    "peephole_params_into_lstm_rnn": (
        lambda: rnnjax.rnn(LSTM4, PEEPHOLE_PARAMS, XS),
        ValueError,
        r"rnnjax.rnn: .*" + NOT_LSTM_PARAMS.format("PeepholeLSTM") + r".*'peephole'\)",
    ),
    "peephole_params_into_lstm_layer": (
        lambda: rnnjax.layer(LSTM4).apply(PEEPHOLE_PARAMS, XS),
        ValueError,
        r"rnnjax.layer: .*" + NOT_LSTM_PARAMS.format("PeepholeLSTM"),
    ),
    "peephole_params_into_lstm_step": (
        lambda: LSTM4.step(PEEPHOLE_PARAMS, LSTM4.initial_carry(LN_PARAMS, 2), XS[:, 0]),
        ValueError,
        r"rnnjax.lstm\(4\).step: .*" + NOT_LSTM_PARAMS.format("PeepholeLSTM"),
    ),
    "lru_r_min_string": (
        lambda: rnnjax.lru(HIDDEN, r_min="a"),
        TypeError,
        r"rnnjax.lru: r_min must be a real number \(a Python float\); got 'a' of type str",
    ),
    "lru_r_max_none": (
        lambda: rnnjax.lru(HIDDEN, r_max=None),
        TypeError,
        r"rnnjax.lru: r_max must be a real number .*; got None",
    ),
    "lru_max_phase_string": (
        lambda: rnnjax.lru(HIDDEN, max_phase="pi"),
        TypeError,
        r"rnnjax.lru: max_phase must be a real number .*; got 'pi'",
    ),
    "lru_r_min_array": (
        lambda: rnnjax.lru(HIDDEN, r_min=jnp.array(0.5)),
        TypeError,
        r"rnnjax.lru: r_min must be a real number \(a Python float\); got .*Array\w* of dtype"
        r" float32 and shape \(\)",
    ),
    "layer_norm_lstm_epsilon_array": (
        lambda: rnnjax.layer_norm_lstm(HIDDEN, epsilon=jnp.array(1e-3)),
        TypeError,
        r"rnnjax.layer_norm_lstm: epsilon must be a real number .*Array\w* of dtype float32",
    ),
    "nnx_lru_r_min_string": (
        lambda: rnnjax.nnx.LRU(FEATURES, HIDDEN, r_min="a", rngs=nnx.Rngs(0)),
        TypeError,
        r"rnnjax.nnx.LRU: r_min must be a real number .*; got 'a'",
    ),
    "nnx_lru_r_min_array": (
        lambda: rnnjax.nnx.LRU(FEATURES, HIDDEN, r_min=jnp.array(0.5), rngs=nnx.Rngs(0)),
        TypeError,
        r"rnnjax.nnx.LRU: r_min must be a real number .*Array",
    ),
    "linen_lru_max_phase_string": (
        lambda: rnnjax.linen.LRU(HIDDEN, max_phase="pi").init(KEY, XS),
        TypeError,
        r"rnnjax.linen.LRU: max_phase must be a real number .*; got 'pi'",
    ),
    "linen_lru_r_max_none": (
        lambda: rnnjax.linen.LRU(HIDDEN, r_max=None).init(KEY, XS),
        TypeError,
        r"rnnjax.linen.LRU: r_max must be a real number .*; got None",
    ),
}


@pytest.mark.parametrize("case", sorted(CELL_LEFTOVERS))
def test_cell_leftovers_of_issue_32(case):
    call, error, message = CELL_LEFTOVERS[case]
    with pytest.raises(error, match=message):
        call()
