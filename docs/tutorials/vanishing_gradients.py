"""Tutorial 1: why gates. The gradient of the last output with respect to earlier inputs.

The page ``docs/tutorials/vanishing_gradients.md`` shows all of this file, in order: its code
blocks, pasted into one file, are this script. ``RNNJAX_QUICK=1`` runs a small setting (what
CI runs). The page's figure: ``cd docs/tutorials/figures && python ../vanishing_gradients.py``.
"""

# --8<-- [start:imports]
import os
from functools import partial

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import rnnjax

QUICK = os.environ.get("RNNJAX_QUICK") == "1"  # a small setting, for a quick check
# sequence length T, units per cell, sequences per batch, training steps
TIME_STEPS, HIDDEN, BATCH, STEPS = (12, 8, 16, 20) if QUICK else (100, 32, 64, 1500)
# --8<-- [end:imports]


# --8<-- [start:task]
def make_batch(key, batch, time_steps, noise=1.0):
    """Inputs ``[batch, time, 2]``: a sign (+1 or -1) at step 0, then Gaussian noise, and a
    marker channel that is 1 at step 0 only. The target is the sign, read at step T - 1."""
    k_sign, k_noise = jax.random.split(key)
    signs = jax.random.rademacher(k_sign, (batch,), dtype=jnp.float32)
    values = (noise * jax.random.normal(k_noise, (batch, time_steps))).at[:, 0].set(signs)
    marker = jnp.zeros((batch, time_steps)).at[:, 0].set(1.0)
    return jnp.stack([values, marker], axis=-1), signs


# --8<-- [end:task]


# --8<-- [start:model]
def chrono_init(params, key, max_lag):
    """Gate biases that give each unit a memory of about ``U(1, max_lag)`` steps at the start
    (Tallec and Ollivier 2018): the LSTM's forget gate ``log u`` (input gate ``-log u``), the
    GRU's update gate ``log u``. Keras starts the forget gate at 1 and the update gate at 0."""
    hidden = params.recurrent_kernel.shape[0]
    log_u = jnp.log(jax.random.uniform(key, (hidden,), minval=1.0, maxval=max_lag))
    if isinstance(params, rnnjax.LSTMParams):  # gates i, f, g, o
        bias = params.bias.at[:hidden].set(-log_u).at[hidden : 2 * hidden].set(log_u)
    else:  # GRUParams: gates r, z, n
        bias = params.bias.at[hidden : 2 * hidden].set(log_u)
    return params._replace(bias=bias)


MODELS = {  # name: (cell, whether its gates start with chrono_init)
    "SimpleRNN": (rnnjax.simple_rnn, False),
    "LSTM": (rnnjax.lstm, False),
    "GRU": (rnnjax.gru, False),
    "LSTM, chrono init": (rnnjax.lstm, True),
    "GRU, chrono init": (rnnjax.gru, True),
}


def init_model(name, hidden, max_lag, key):
    """The cell and ``params``: the cell's own, and a Dense(1) head on its hidden state."""
    make_cell, chrono = MODELS[name]
    cell = make_cell(hidden)
    k_cell, k_head, k_chrono = jax.random.split(key, 3)
    params = cell.init(k_cell, input_size=2)
    params = {
        "rnn": chrono_init(params, k_chrono, max_lag) if chrono else params,
        "head": jax.random.normal(k_head, (hidden,)) / hidden**0.5,
        "bias": jnp.zeros(()),
    }
    return cell, params


def predict(cell, params, xs):  # xs [batch, time, 2] -> y_T [batch]
    carry, _ = rnnjax.rnn(cell, params["rnn"], xs)
    return cell.output(carry) @ params["head"] + params["bias"]


# --8<-- [end:model]


# --8<-- [start:gradient]
def gradient_by_lag(cell, params, xs):
    """``||d y_T / d x_{T-k}||`` for k = 0 .. T-1, averaged over the batch: ``[T]``.

    Sequence ``b``'s ``y_T`` reads only its own inputs, so one backward pass of
    ``sum_b y_T[b]`` gives every sequence's gradient at every step at once.
    """
    grads = jax.grad(lambda xs: predict(cell, params, xs).sum())(xs)  # [batch, time, 2]
    norms = jnp.linalg.norm(grads, axis=-1).mean(axis=0)  # [time], indexed by step t
    return norms[::-1]  # indexed by lag k = T - 1 - t


# --8<-- [end:gradient]


# --8<-- [start:train]
def train(cell, params, batches):
    """Adam on the MSE, one step per batch; the loop is a ``lax.scan`` over the batches
    (``xs [steps, batch, time, 2]``, ``targets [steps, batch]``)."""
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))

    def loss_fn(params, xs, targets):
        return jnp.mean((predict(cell, params, xs) - targets) ** 2)

    def train_step(state, batch):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(train_step, (params, optimizer.init(params)), batches)
    return params, losses


# --8<-- [end:train]


# --8<-- [start:experiment]
@partial(jax.jit, static_argnums=0)  # compiled once per cell: both inits of a cell share it
def experiment(cell, params, batches, test):
    """Gradients by lag at initialisation and after training, test accuracy, losses."""
    xs_test, signs_test = test
    at_init = gradient_by_lag(cell, params, xs_test)
    params, losses = train(cell, params, batches)
    accuracy = jnp.mean(jnp.sign(predict(cell, params, xs_test)) == signs_test)
    return at_init, gradient_by_lag(cell, params, xs_test), accuracy, losses


# --8<-- [end:experiment]


# --8<-- [start:run]
test = make_batch(jax.random.key(1), 256, TIME_STEPS)
xs, targets = make_batch(jax.random.key(2), STEPS * BATCH, TIME_STEPS)
batches = xs.reshape(STEPS, BATCH, TIME_STEPS, 2), targets.reshape(STEPS, BATCH)
curves = {}
for name in MODELS:  # every model sees the same batches, in the same order
    cell, params = init_model(name, HIDDEN, TIME_STEPS, jax.random.key(0))
    at_init, trained, accuracy, losses = experiment(cell, params, batches, test)
    curves[name] = {"at initialisation": at_init, "after training": trained}
    print(
        f"{name:17s} loss {float(losses[-100:].mean()):.3f}, test accuracy"
        f" {float(accuracy):.2f}, ||dy_T/dx_0||:"
        f" {float(at_init[-1]):.1e} at initialisation, {float(trained[-1]):.1e} trained"
    )
# --8<-- [end:run]

# --8<-- [start:plot]
figure, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True, constrained_layout=True)
colors = {"SimpleRNN": "tab:red", "LSTM": "tab:blue", "GRU": "tab:green"}
for axis, when in zip(axes, ("at initialisation", "after training"), strict=True):
    for name, by_when in curves.items():
        axis.semilogy(
            np.arange(TIME_STEPS),
            np.asarray(by_when[when]),
            color=colors[name.split(",")[0]],
            linestyle="--" if "chrono" in name else "-",
            label=name,
        )
    axis.set(title=when, xlabel="lag k (steps back from the last input)")
    axis.grid(True, which="major", alpha=0.3)
axes[0].set(ylabel=r"mean $\|\partial y_T / \partial x_{T-k}\|$")
axes[1].legend(frameon=False, fontsize="small")
figure.suptitle(f"Gradient of the last output with respect to earlier inputs (T = {TIME_STEPS})")
figure.savefig("vanishing_gradients.png", dpi=120)
print("wrote vanishing_gradients.png")
# --8<-- [end:plot]
