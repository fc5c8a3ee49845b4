"""Tutorial 5: a tanh RNN cell from scratch in plain JAX, then the same with rnnjax.

The page ``docs/tutorials/from_scratch.md`` shows all of this file, in order: its code blocks,
pasted into one file, are this script. ``RNNJAX_QUICK=1`` runs a small setting (what CI
runs). The page's figure: ``cd docs/tutorials/figures && python ../from_scratch.py``.
"""

# --8<-- [start:settings]
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

import rnnjax

QUICK = os.environ.get("RNNJAX_QUICK") == "1"  # a small setting, for a quick check
HIDDEN, TIME_STEPS, BATCH, STEPS = (8, 10, 16, 20) if QUICK else (32, 20, 64, 500)
# --8<-- [end:settings]


# --8<-- [start:scratch]
def init(key, input_size, hidden_size):
    k_w, k_u = jax.random.split(key)
    return {
        "W": jax.random.normal(k_w, (input_size, hidden_size)) / input_size**0.5,
        "U": jax.nn.initializers.orthogonal()(k_u, (hidden_size, hidden_size)),
        "b": jnp.zeros(hidden_size),
    }


def step(params, h, x):  # one time step: h' = tanh(x W + h U + b)
    h = jnp.tanh(x @ params["W"] + h @ params["U"] + params["b"])
    return h, h  # (new carry, output)


def run(params, xs):  # xs: [time, batch, features]
    h0 = jnp.zeros((xs.shape[1], params["U"].shape[0]))
    return jax.lax.scan(lambda h, x: step(params, h, x), h0, xs)  # (h_T, hs)


# --8<-- [end:scratch]


# --8<-- [start:task]
def make_task(key, batch, time_steps):
    """Inputs ``[time, batch, 1]`` uniform in [-1, 1]; the target is their mean over time."""
    xs = jax.random.uniform(key, (time_steps, batch, 1), minval=-1.0, maxval=1.0)
    return xs, xs[..., 0].mean(axis=0)


def loss_fn(params, xs, targets):
    h_last, _ = run(params["rnn"], xs)
    return jnp.mean((h_last @ params["head"] - targets) ** 2)


@jax.jit
def sgd_step(params, xs, targets, learning_rate=0.1):
    loss, grads = jax.value_and_grad(loss_fn)(params, xs, targets)
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), loss


# --8<-- [end:task]

# --8<-- [start:train]
key_rnn, key_head, key_data = jax.random.split(jax.random.key(0), 3)
params = {
    "rnn": init(key_rnn, input_size=1, hidden_size=HIDDEN),
    "head": jax.random.normal(key_head, (HIDDEN,)) / HIDDEN**0.5,
}
xs, targets = make_task(key_data, BATCH, TIME_STEPS)
losses = []
for _ in range(STEPS):
    params, loss = sgd_step(params, xs, targets)
    losses.append(float(loss))
print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} after {STEPS} steps of SGD")
# --8<-- [end:train]

# --8<-- [start:rnnjax]
cell = rnnjax.simple_rnn(HIDDEN)  # tanh by default
scratch = params["rnn"]
rnnjax_params = rnnjax.SimpleRNNParams(
    kernel=scratch["W"], recurrent_kernel=scratch["U"], bias=scratch["b"]
)
h_last, hs = run(scratch, xs)
carry, ys = rnnjax.rnn(cell, rnnjax_params, xs, time_major=True)
for name, mine, theirs in [("h_T", h_last, carry), ("outputs", hs, ys)]:
    difference, close = (
        float(jnp.max(jnp.abs(theirs - mine))),
        jnp.allclose(theirs, mine, atol=1e-6),
    )
    print(f"max |{name} difference|: {difference:.1e}, allclose: {close}")
# --8<-- [end:rnnjax]


# --8<-- [start:grads]
def rnnjax_loss(params, xs, targets):
    carry, _ = rnnjax.rnn(cell, params["rnn"], xs, time_major=True)
    return jnp.mean((carry @ params["head"] - targets) ** 2)


grads_scratch = jax.grad(loss_fn)(params, xs, targets)
grads_rnnjax = jax.grad(rnnjax_loss)({"rnn": rnnjax_params, "head": params["head"]}, xs, targets)
for mine, theirs in [("W", "kernel"), ("U", "recurrent_kernel"), ("b", "bias")]:
    a, b = grads_scratch["rnn"][mine], getattr(grads_rnnjax["rnn"], theirs)
    difference, close = float(jnp.max(jnp.abs(a - b))), jnp.allclose(a, b, atol=1e-6)
    print(f"max |d loss / d {mine} difference|: {difference:.1e}, allclose: {close}")
# --8<-- [end:grads]

# --8<-- [start:lengths]
lengths = jnp.array([TIME_STEPS, 3] + [TIME_STEPS // 2] * (BATCH - 2))
carry, ys = rnnjax.rnn(cell, rnnjax_params, xs, time_major=True, seq_lengths=lengths)
# The same as running the scratch cell on sequence 1's first 3 steps only:
h_3, _ = run(scratch, xs[:3, 1:2])
print("sequence 1 stops after 3 steps:", bool(jnp.allclose(carry[1], h_3[0], atol=1e-6)))
print("outputs past its end are zeros:", bool(jnp.all(ys[3:, 1] == 0)))
# --8<-- [end:lengths]

# --8<-- [start:reverse]
carry, ys = rnnjax.rnn(cell, rnnjax_params, xs, time_major=True, reverse=True)
h_back, hs_back = run(scratch, xs[::-1])  # the scratch cell on the flipped sequence
print("reverse == scratch on xs[::-1]:", bool(jnp.allclose(carry, h_back, atol=1e-6)))
print("outputs at their positions:", bool(jnp.allclose(ys, hs_back[::-1], atol=1e-6)))
# --8<-- [end:reverse]

# --8<-- [start:layers]
encoder = rnnjax.stack(
    rnnjax.bidirectional(rnnjax.layer(rnnjax.simple_rnn(HIDDEN))),
    rnnjax.layer(rnnjax.lstm(HIDDEN)),
)  # a layer is a pair of pure functions: init and apply
encoder_params = encoder.init(jax.random.key(1), input_size=1)
xs_batch_major = jnp.swapaxes(xs, 0, 1)  # [batch, time, features], the default layout
(bidirectional_carry, lstm_carry), ys = jax.jit(encoder.apply)(
    encoder_params, xs_batch_major, seq_lengths=lengths
)
print("stacked outputs:", ys.shape)  # [batch, time, hidden]
print("final carries:", bidirectional_carry[0].shape, lstm_carry.h.shape)  # (fwd, bwd), LSTM
# --8<-- [end:layers]

# --8<-- [start:plot]
figure, axis = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
axis.semilogy(losses)
axis.set(xlabel="SGD step", ylabel="mean squared error", title="Training the scratch RNN")
axis.grid(True, which="both", alpha=0.3)
figure.savefig("from_scratch_loss.png", dpi=120)
print("wrote from_scratch_loss.png")
# --8<-- [end:plot]
