"""Float64 NumPy references written from the cell equations (docs/guides/cells.md), not
from rnnjax.

Gate blocks are sliced by hand: LSTM columns i, f, g, o; GRU columns r, z, n.
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def simple_rnn_step(p, h, x, activation=np.tanh):
    return activation(x @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"])


def lstm_step(p, state, x):
    h, c = state
    n = h.shape[-1]
    z = x @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"]
    i = sigmoid(z[..., 0:n])
    f = sigmoid(z[..., n : 2 * n])
    g = np.tanh(z[..., 2 * n : 3 * n])
    o = sigmoid(z[..., 3 * n : 4 * n])
    c = f * c + i * g
    return o * np.tanh(c), c


def peephole_lstm_step(p, state, x):
    """Gers, Schraudolph & Schmidhuber (2002): i and f read c_{t-1}, o reads c_t."""
    h, c = state
    n = h.shape[-1]
    z = x @ p["kernel"] + h @ p["recurrent_kernel"] + p["bias"]
    w_i, w_f, w_o = p["peephole"][:n], p["peephole"][n : 2 * n], p["peephole"][2 * n :]
    i = sigmoid(z[..., 0:n] + w_i * c)
    f = sigmoid(z[..., n : 2 * n] + w_f * c)
    g = np.tanh(z[..., 2 * n : 3 * n])
    c = f * c + i * g
    o = sigmoid(z[..., 3 * n : 4 * n] + w_o * c)
    return o * np.tanh(c), c


def layer_norm(v, gain, bias=0.0, epsilon=1e-5):
    """Ba et al. (2016): over the last axis, the population variance, epsilon inside the root."""
    mean = v.mean(axis=-1, keepdims=True)
    variance = ((v - mean) ** 2).mean(axis=-1, keepdims=True)
    return (v - mean) / np.sqrt(variance + epsilon) * gain + bias


def layer_norm_lstm_step(p, state, x, epsilon=1e-5):
    """Ba et al. (2016), supplementary material, as Haste: x W and h U normalised apart, their
    norms' biases folded into b; c_t kept as it is, normalised only inside tanh."""
    h, c = state
    n = h.shape[-1]
    z = (
        layer_norm(x @ p["kernel"], p["input_gain"], epsilon=epsilon)
        + layer_norm(h @ p["recurrent_kernel"], p["recurrent_gain"], epsilon=epsilon)
        + p["bias"]
    )
    i = sigmoid(z[..., 0:n])
    f = sigmoid(z[..., n : 2 * n])
    g = np.tanh(z[..., 2 * n : 3 * n])
    o = sigmoid(z[..., 3 * n : 4 * n])
    c = f * c + i * g
    return o * np.tanh(layer_norm(c, p["cell_gain"], p["cell_bias"], epsilon)), c


def gru_step(p, h, x, reset_after):
    n = h.shape[-1]
    w, u, b = p["kernel"], p["recurrent_kernel"], p["bias"]
    gate = {name: slice(k * n, (k + 1) * n) for k, name in enumerate("rzn")}
    x_part = {name: x @ w[:, s] + b[s] for name, s in gate.items()}
    if reset_after:
        beta = p["recurrent_bias"]
        h_part = {name: h @ u[:, s] + beta[s] for name, s in gate.items()}
        r = sigmoid(x_part["r"] + h_part["r"])
        z = sigmoid(x_part["z"] + h_part["z"])
        candidate = np.tanh(x_part["n"] + r * h_part["n"])
    else:
        r = sigmoid(x_part["r"] + h @ u[:, gate["r"]])
        z = sigmoid(x_part["z"] + h @ u[:, gate["z"]])
        candidate = np.tanh(x_part["n"] + (r * h) @ u[:, gate["n"]])
    return (1 - z) * candidate + z * h


def g(x):
    """minGRU's and minLSTM's candidate activation: x + 1/2 for x >= 0, sigmoid below."""
    return np.where(x >= 0, x + 0.5, sigmoid(x))


def min_gru_step(p, h, x):
    z = x @ p["kernel"] + p["bias"]
    n = h.shape[-1]
    update = sigmoid(z[..., :n])
    return (1 - update) * h + update * g(z[..., n:])


def min_lstm_step(p, h, x):
    z = x @ p["kernel"] + p["bias"]
    n = h.shape[-1]
    f, i = sigmoid(z[..., :n]), sigmoid(z[..., n : 2 * n])
    return f / (f + i) * h + i / (f + i) * g(z[..., 2 * n :])


def run(step, p, xs, initial_state, lengths=None, reverse=False):
    """Per-example loop over ``xs [batch, time, features]``.

    Example ``b`` runs its first ``lengths[b]`` steps (backwards when ``reverse``); outputs
    elsewhere are zero. Returns ``(final_state per example, ys [batch, time, hidden])``.
    ``initial_state`` is a tuple of ``[batch, hidden]`` arrays, the state ``step`` takes
    (one array for the RNN and GRU, ``(h, c)`` for the LSTM).
    """
    p = {k: None if v is None else np.asarray(v, np.float64) for k, v in p.items()}
    xs = np.asarray(xs, np.float64)
    batch, time = xs.shape[:2]
    lengths = [time] * batch if lengths is None else [int(n) for n in lengths]
    finals, ys = [], None
    for b in range(batch):
        state = tuple(np.asarray(s[b], np.float64) for s in initial_state)
        steps = range(lengths[b])
        for t in reversed(steps) if reverse else steps:
            out = step(p, state if len(state) > 1 else state[0], xs[b, t])
            state = out if isinstance(out, tuple) else (out,)
            if ys is None:
                ys = np.zeros((batch, time, state[0].shape[-1]))
            ys[b, t] = state[0]
        finals.append(state)
    if ys is None:
        ys = np.zeros((batch, time, initial_state[0].shape[-1]))
    final = tuple(np.stack([f[k] for f in finals]) for k in range(len(initial_state)))
    return final, ys


def indrnn_step(p, h, x, activation=lambda z: np.maximum(z, 0)):
    """IndRNN (Li et al. 2018): h' = act(x W + u * h + b)."""
    return activation(x @ p["kernel"] + p["recurrent_weight"] * h + p["bias"])


def para_gru_step(p, h, x):
    """ParaGRU: the GRU with per-unit recurrent weights a_r, a_z, a_n (columns r, z, n)."""
    n = h.shape[-1]
    w, a, b = p["kernel"], p["recurrent_weight"], p["bias"]
    r = sigmoid(x @ w[:, :n] + b[:n] + a[:n] * h)
    z = sigmoid(x @ w[:, n : 2 * n] + b[n : 2 * n] + a[n : 2 * n] * h)
    candidate = np.tanh(x @ w[:, 2 * n :] + b[2 * n :] + r * a[2 * n :] * h)
    return (1 - z) * candidate + z * h


def para_lstm_step(p, state, x):
    """ParaLSTM: the CIFG LSTM (input gate 1 - f) with per-unit recurrent weights (f, g, o)."""
    h, c = state
    n = h.shape[-1]
    w, a, b = p["kernel"], p["recurrent_weight"], p["bias"]
    pre = [x @ w[:, k * n : (k + 1) * n] + b[k * n : (k + 1) * n] + a[k * n : (k + 1) * n] * h
           for k in range(3)]  # fmt: skip
    f, g, o = sigmoid(pre[0]), np.tanh(pre[1]), sigmoid(pre[2])
    c = f * c + (1 - f) * g
    return o * np.tanh(c), c


def rg_lru_step(p, h, x, c=8.0):
    """RG-LRU (De et al. 2024): a = sigmoid(Lambda) with Lambda = -a_param, a_t = a^(c r_t),
    h' = a_t h + sqrt(1 - a_t^2) (i_t v_t); columns r, i, v."""
    n = h.shape[-1]
    z = x @ p["kernel"] + p["bias"]
    r, i, v = sigmoid(z[..., :n]), sigmoid(z[..., n : 2 * n]), z[..., 2 * n :]
    a_t = sigmoid(-p["a_param"]) ** (c * r)
    return a_t * h + np.sqrt(1 - a_t**2) * (i * v)


def lru_step(p, h, x):
    """LRU (Orvieto et al. 2023): h' = Lambda h + gamma (x B), Lambda = exp(-exp(nu) + i
    exp(theta)); the state as [Re h, Im h]."""
    n = h.shape[-1] // 2
    state = h[..., :n] + 1j * h[..., n:]
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    state = lam * state + np.exp(p["gamma_log"]) * (x @ (p["b_real"] + 1j * p["b_imag"]))
    return np.concatenate([state.real, state.imag], axis=-1)
