"""Quickstart: train a small LSTM to sum a noisy sequence, and watch the loss fall.

The data is made here: each sequence is ``T`` random numbers with a random length; the target
is the sum of its valid part. Padding is handled by ``seq_lengths``.

    python examples/quickstart.py [--steps 300] [--hidden 32]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import rnnjax


def make_batch(key, batch=64, time_steps=20):
    k_values, k_lengths = jax.random.split(key)
    xs = jax.random.uniform(k_values, (batch, time_steps, 1), minval=-1, maxval=1)
    lengths = jax.random.randint(k_lengths, (batch,), 1, time_steps + 1)
    valid = jnp.arange(time_steps)[None, :] < lengths[:, None]
    targets = jnp.sum(jnp.where(valid, xs[..., 0], 0), axis=1)
    return xs, lengths, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--hidden", type=int, default=32, help="LSTM hidden size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cell = rnnjax.lstm(args.hidden)
    key, init_key, head_key = jax.random.split(jax.random.key(args.seed), 3)
    params = {
        "lstm": cell.init(init_key, input_size=1),
        "head": jax.random.normal(head_key, (args.hidden,)) / args.hidden**0.5,
    }

    def loss_fn(params, xs, lengths, targets):
        carry, _ = rnnjax.rnn(cell, params["lstm"], xs, seq_lengths=lengths)
        predictions = carry.h @ params["head"]  # the state after each sequence's last step
        return jnp.mean((predictions - targets) ** 2)

    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, key):
        xs, lengths, targets = make_batch(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, lengths, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    start, recent = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        key, batch_key = jax.random.split(key)
        params, opt_state, loss = train_step(params, opt_state, batch_key)
        recent.append(float(loss))
        if step % 50 == 0 or step == 1:
            print(f"step {step:4d}  mean loss {sum(recent) / len(recent):8.4f}", flush=True)
            recent = []
    baseline = jnp.var(make_batch(jax.random.key(1), batch=4096)[2])
    print(f"done in {time.perf_counter() - start:.1f}s; predicting the mean scores {baseline:.4f}")


if __name__ == "__main__":
    main()
