"""``rnnjax.interop``'s converters from the original implementations, against float64 NumPy
transcriptions of those implementations with their own parameter layout: Haste's
``LayerNormLSTMScript`` (lmnt-com/haste, ``haste_pytorch/layer_norm_lstm.py``: gates i, g, f,
o) and mingru-pytorch's ``minGRU``/``minLSTM`` step (lucidrains/minGRU-pytorch: blocks
(hidden, gate) and (hidden, f, i), ``Linear`` without bias)."""

import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from tests import reference

BATCH, TIME, INPUT, HIDDEN = 2, 5, 3, 4


def float32_exact(rng, *shape):
    return rng.normal(size=shape).astype(np.float32).astype(np.float64)


def layer_norm(v, weight, bias=0.0, eps=1e-5):  # torch.nn.functional.layer_norm, last axis
    mean, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
    return (v - mean) / np.sqrt(var + eps) * weight + bias


def haste_layer_norm_lstm(p, x):
    """Haste's ``LayerNormLSTMScript`` (zoneout 0), batch first: ``x [B, T, I]``."""
    h = c = np.zeros((x.shape[0], p["recurrent_kernel"].shape[0]))
    wx = layer_norm(x @ p["kernel"], p["gamma"][0])
    ys = []
    for t in range(x.shape[1]):
        v = layer_norm(h @ p["recurrent_kernel"], p["gamma"][1]) + wx[:, t] + p["bias"]
        i, g, f, o = np.split(v, 4, axis=-1)
        c = reference.sigmoid(f) * c + reference.sigmoid(i) * np.tanh(g)
        h = reference.sigmoid(o) * np.tanh(layer_norm(c, p["gamma_h"], p["beta_h"]))
        ys.append(h)
    return np.stack(ys, axis=1)


def mingru_g(x):
    return np.where(x >= 0, x + 0.5, reference.sigmoid(x))


def mingru_min_gru(weight, x):
    """``minGRU.forward`` one token at a time (its ``seq_len == 1`` branch), from no state."""
    prev = None
    ys = []
    for t in range(x.shape[1]):
        hidden, gate = np.split(x[:, t] @ weight.T, 2, axis=-1)
        hidden, gate = mingru_g(hidden), reference.sigmoid(gate)
        prev = hidden * gate if prev is None else prev + gate * (hidden - prev)  # torch.lerp
        ys.append(prev)
    return np.stack(ys, axis=1)


def mingru_min_lstm(weight, x):
    """``minLSTM.forward`` one token at a time (its ``seq_len == 1`` branch), from no state."""
    prev = None
    ys = []
    for t in range(x.shape[1]):
        hidden, f_gate, i_gate = np.split(x[:, t] @ weight.T, 3, axis=-1)
        hidden, f_gate, i_gate = mingru_g(hidden), *map(reference.sigmoid, (f_gate, i_gate))
        f_prime, i_prime = f_gate / (f_gate + i_gate), i_gate / (f_gate + i_gate)
        prev = hidden * i_prime if prev is None else prev * f_prime + hidden * i_prime
        ys.append(prev)
    return np.stack(ys, axis=1)


def haste_state(rng):
    return {
        "kernel": float32_exact(rng, INPUT, 4 * HIDDEN),
        "recurrent_kernel": float32_exact(rng, HIDDEN, 4 * HIDDEN),
        "bias": float32_exact(rng, 4 * HIDDEN),
        "gamma": 1 + 0.3 * float32_exact(rng, 2, 4 * HIDDEN),
        "gamma_h": 1 + 0.3 * float32_exact(rng, HIDDEN),
        "beta_h": float32_exact(rng, HIDDEN),
    }


def test_haste_layer_norm_lstm_weights_load_in_rnnjax_gate_order():
    rng = np.random.default_rng(0)
    state, x = haste_state(rng), float32_exact(rng, BATCH, TIME, INPUT)
    params = rnnjax.interop.layer_norm_lstm_params_from_haste(state)
    _, ys = rnnjax.rnn(rnnjax.layer_norm_lstm(HIDDEN), params, jnp.asarray(x, jnp.float32))
    want = haste_layer_norm_lstm(state, x)
    np.testing.assert_allclose(ys, want, rtol=1e-5, atol=2e-6)
    unpermuted = params._replace(
        kernel=jnp.asarray(state["kernel"], jnp.float32),
        bias=jnp.asarray(state["bias"], jnp.float32),
    )  # Haste's blocks read as rnnjax's: g and f swapped
    _, wrong = rnnjax.rnn(rnnjax.layer_norm_lstm(HIDDEN), unpermuted, jnp.asarray(x, jnp.float32))
    assert np.abs(np.asarray(wrong) - want).max() > 1e-2


@pytest.mark.parametrize(
    ("kind", "name", "gates", "original", "convert"),
    [
        (
            "min_gru",
            "to_hidden_and_gate.weight",
            2,
            mingru_min_gru,
            rnnjax.interop.min_gru_params_from_mingru,
        ),
        (
            "min_lstm",
            "to_hidden_and_f_i_gate.weight",
            3,
            mingru_min_lstm,
            rnnjax.interop.min_lstm_params_from_mingru,
        ),
    ],
)
def test_mingru_pytorch_weights_load_in_rnnjax_block_order(kind, name, gates, original, convert):
    rng = np.random.default_rng(1)
    weight, x = float32_exact(rng, gates * HIDDEN, INPUT), float32_exact(rng, BATCH, TIME, INPUT)
    params = convert({name: weight})
    cell = getattr(rnnjax, kind)(HIDDEN)
    want = original(weight, x)
    for parallel in (True, False):
        _, ys = rnnjax.rnn(cell, params, jnp.asarray(x, jnp.float32), parallel=parallel)
        np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(params.bias, 0)


def test_converters_name_what_is_wrong():
    haste = rnnjax.interop.layer_norm_lstm_params_from_haste
    state = haste_state(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"from_haste: the state_dict must hold 'gamma_h'; got"):
        haste({k: v for k, v in state.items() if k != "gamma_h"})
    with pytest.raises(ValueError, match=r"from_haste: the state_dict's shapes must be .*'gamma'"):
        haste({**state, "gamma": state["gamma"][:1]})
    with pytest.raises(TypeError, match=r"from_haste: bias must be floating point; got int"):
        haste({**state, "bias": np.zeros(4 * HIDDEN, int)})
    min_gru = rnnjax.interop.min_gru_params_from_mingru
    with pytest.raises(ValueError, match=r"to_hidden_and_gate.weight must have shape \[2 \* hid"):
        min_gru({"to_hidden_and_gate.weight": np.ones((5, 3))})
    with pytest.raises(ValueError, match=r"has 'to_out.weight', a linear layer after the cell"):
        min_gru({"to_hidden_and_gate.weight": np.ones((4, 3)), "to_out.weight": np.ones((3, 2))})
    with pytest.raises(ValueError, match=r"min_lstm_params_from_mingru: the state_dict must hold"):
        rnnjax.interop.min_lstm_params_from_mingru({"to_hidden_and_gate.weight": np.ones((6, 3))})
