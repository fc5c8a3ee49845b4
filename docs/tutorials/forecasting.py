"""Tutorial 3: forecast yearly sunspot numbers with SimpleRNN, LSTM and GRU(128) -> Dense(1).

The page ``docs/tutorials/forecasting.md`` shows all of this file, in order: its code blocks,
pasted into one file, are this script. ``RNNJAX_QUICK=1`` runs a small setting (what CI
runs). The page's figure: ``cd docs/tutorials/figures && python ../forecasting.py``.
"""

# --8<-- [start:imports]
import os
from functools import partial

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import statsmodels.api as sm

import rnnjax

QUICK = os.environ.get("RNNJAX_QUICK") == "1"  # a small setting, for a quick check
HIDDEN, STEPS = (8, 20) if QUICK else (128, 1500)  # units per cell, training steps
# --8<-- [end:imports]


# --8<-- [start:data]
def load_sunspots(window):
    """Windows ``[n, window, 1]`` of standardised values and the value after each, split in
    time: the first 70% to train on, the next 15% to validate, the last 15% to test."""
    series = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float32)
    xs = np.lib.stride_tricks.sliding_window_view(series[:-1], window)[..., None]
    ys = series[window:]
    n_train, n_val = int(0.7 * len(ys)), int(0.15 * len(ys))
    mean, std = series[: n_train + window].mean(), series[: n_train + window].std()  # train only
    parts = {
        "train": slice(0, n_train),
        "val": slice(n_train, n_train + n_val),
        "test": slice(n_train + n_val, len(ys)),
    }
    data = {name: ((xs[p] - mean) / std, (ys[p] - mean) / std) for name, p in parts.items()}
    return data, (mean, std)


# --8<-- [end:data]


# --8<-- [start:model]
CELLS = {"SimpleRNN": rnnjax.simple_rnn, "LSTM": rnnjax.lstm, "GRU": rnnjax.gru}


def init_params(cell, hidden, key):
    k_cell, k_dense = jax.random.split(key)
    return {
        "rnn": cell.init(k_cell, input_size=1),
        "dense": jax.nn.initializers.glorot_uniform()(k_dense, (hidden, 1))[:, 0],
        "bias": jnp.zeros(()),
    }


def predict(cell, params, windows):  # [batch, time, 1] -> [batch]
    carry, _ = rnnjax.rnn(cell, params["rnn"], windows)
    return cell.output(carry) @ params["dense"] + params["bias"]


# --8<-- [end:model]


# --8<-- [start:train]
def batch_indices(n, batch_size, steps, seed=0):
    """``[steps, batch_size]`` indices into the training windows, reshuffled every epoch."""
    rng = np.random.default_rng(seed)
    epochs = -(-steps * batch_size // n)
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return order[: steps * batch_size].reshape(steps, batch_size)


@partial(jax.jit, static_argnums=0)
def fit(cell, params, data, batches, learning_rate=1e-3):
    """Adam on the MSE, one step per row of ``batches``, as one ``lax.scan``; returns the
    params that did best on the validation windows (early stopping) and the losses."""
    optimizer = optax.adam(learning_rate)
    train_xs, train_ys = data["train"]
    val_xs, val_ys = data["val"]

    def mse(params, xs, ys):
        return jnp.mean((predict(cell, params, xs) - ys) ** 2)

    def train_step(state, batch):
        params, opt_state, best = state
        grads = jax.grad(mse)(params, train_xs[batch], train_ys[batch])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        val_loss = mse(params, val_xs, val_ys)
        best = jax.lax.cond(val_loss < best[1], lambda: (params, val_loss), lambda: best)
        return (params, opt_state, best), val_loss

    state = (params, optimizer.init(params), (params, jnp.inf))
    (_, _, (best_params, _)), val_losses = jax.lax.scan(train_step, state, batches)
    return best_params, val_losses


def rmse(prediction, truth):
    return float(np.sqrt(np.mean((np.asarray(prediction) - truth) ** 2)))


# --8<-- [end:train]


# --8<-- [start:run]
data, (mean, std) = load_sunspots(window=24)
test_xs, test_ys = data["test"]
truth = test_ys * std + mean
persistence = test_xs[:, -1, 0] * std + mean  # next year = this year
print(f"persistence: test RMSE {rmse(persistence, truth):.1f}")
batches = batch_indices(len(data["train"][1]), batch_size=32, steps=STEPS)
forecasts = {}
for name, make_cell in CELLS.items():
    cell = make_cell(HIDDEN)
    params = init_params(cell, HIDDEN, jax.random.key(0))
    params, val_losses = fit(cell, params, data, batches)
    forecasts[name] = np.asarray(predict(cell, params, test_xs)) * std + mean
    val_rmse = float(np.sqrt(val_losses.min())) * std  # of the params kept
    print(
        f"{name:9s}: validation RMSE {val_rmse:.1f}, test RMSE {rmse(forecasts[name], truth):.1f}"
    )
# --8<-- [end:run]

# --8<-- [start:plot]
years = np.arange(2009 - len(truth), 2009)  # the series ends in 2008
figure, axis = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
axis.plot(years, truth, color="black", linewidth=2, label="observed")
axis.plot(years, persistence, color="grey", linestyle=":", label="persistence")
for name, forecast in forecasts.items():
    axis.plot(years, forecast, label=f"{name} (RMSE {rmse(forecast, truth):.1f})")
axis.set(title="Sunspots, one year ahead, test years", xlabel="year", ylabel="sunspot number")
axis.legend(frameon=False, fontsize="small")
figure.savefig("forecasting.png", dpi=120)
print("wrote forecasting.png")
# --8<-- [end:plot]
