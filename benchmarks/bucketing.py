"""Training steps per second of the sentiment example, with and without length bucketing.

The model, loss and train step are examples/sentiment.py's; the batches are either
``rnnjax.training.epoch_batches`` (every batch padded to ``--maxlen``) or
``rnnjax.training.bucket_batches`` (batches of similar lengths, cut to a bucket edge), at the
same batch size. Reviews come from your aclImdb copy (``--data-dir``) or, by default, are
synthetic: random word ids with IMDB's review lengths (log-normal, median 174 words, as the
training set's). The two loaders are timed in alternating rounds after a warm-up pass that
compiles every shape (compile time reported apart), so load from other processes hits both;
the process's CPU time per step is reported too, as it depends less on that load:

    python benchmarks/bucketing.py --maxlen 400 --model small
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

import rnnjax
import rnnjax.training as training

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import sentiment


def synthetic_reviews(examples: int, vocabulary: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.maximum(rng.lognormal(np.log(174), 0.75, examples).astype(int), 1)
    return [rng.integers(2, vocabulary, size=n) for n in lengths]


def data(args: argparse.Namespace, vocabulary: int) -> dict[str, np.ndarray]:
    if args.data_dir:
        texts, labels = sentiment.load_imdb(args.data_dir, "train")
        words = sentiment.build_vocabulary(texts, vocabulary)
        return {**sentiment.encode(texts, words, args.maxlen), "labels": labels}
    reviews = synthetic_reviews(args.examples, vocabulary, args.seed)
    # the example keeps each review's first maxlen words
    ids, lengths = rnnjax.pad_sequences(reviews, maxlen=args.maxlen, truncating="post")
    labels = np.random.default_rng(1).integers(0, 2, len(reviews)).astype(np.float32)
    return {"ids": ids, "lengths": lengths, "labels": labels}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="an aclImdb folder; default: synthetic reviews")
    parser.add_argument("--model", choices=["dropout", "small"], default="dropout")
    parser.add_argument("--max-features", type=int, default=None)
    parser.add_argument("--maxlen", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--buckets", type=int, default=4, help="equal-width buckets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    init, logits_fn = sentiment.make_model(args)
    train = data(args, int(init(jax.random.key(0))["embedding"].shape[0]))

    def loss_fn(params, batch, key):  # examples/sentiment.py's loss
        logits = logits_fn(params, batch, key, deterministic=False)
        return optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean()

    boundaries = [args.maxlen * (i + 1) // args.buckets for i in range(args.buckets - 1)]
    loaders = {
        "padded": training.epoch_batches(train, args.batch_size, seed=args.seed),
        "bucketed": training.bucket_batches(
            train, args.batch_size, lengths=train["lengths"], boundaries=boundaries
        ),
    }
    trainer = training.make_trainer(loss_fn, optax.adam(1e-3))
    state0 = trainer.init(init(jax.random.key(0)), jax.random.key(1))
    steps = args.steps * args.rounds
    times: dict[str, list[float]] = {name: [] for name in loaders}
    for name, get_batch in loaders.items():  # warm-up: compile every shape the run meets
        start, shapes = time.perf_counter(), set()
        for step in range(steps):
            batch = get_batch(step)
            if batch["ids"].shape not in shapes:
                shapes.add(batch["ids"].shape)
                jax.block_until_ready(trainer.step(state0, batch))
        print(f"{name}: {len(shapes)} shapes compiled in {time.perf_counter() - start:.1f} s")
    cpu: dict[str, list[float]] = {
        name: [] for name in loaders
    }  # process CPU seconds per step: less load-sensitive
    for round_ in range(args.rounds):
        for name, get_batch in loaders.items():
            batches = [get_batch(s) for s in range(round_ * args.steps, (round_ + 1) * args.steps)]
            state = state0
            start, start_cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                state, metrics = trainer.step(state, batch)
            jax.block_until_ready(metrics)
            times[name].append(args.steps / (time.perf_counter() - start))
            cpu[name].append((time.process_time() - start_cpu) / args.steps)
    padded_steps = np.mean([loaders["bucketed"](s)["ids"].shape[1] for s in range(steps)])
    print(
        f"model={args.model} maxlen={args.maxlen} batch={args.batch_size} boundaries={boundaries}"
    )
    print(
        f"mean length {train['lengths'].mean():.1f}; bucketed batches' mean time {padded_steps:.1f}"
    )
    for name, rates in times.items():
        print(
            f"{name:>9}: {np.median(rates):6.1f} steps/s, {1e3 * np.median(cpu[name]):6.1f} ms"
            f" CPU time per step (rounds, steps/s: {np.round(rates, 1).tolist()})"
        )
    wall = np.array(times["bucketed"]) / np.array(times["padded"])
    work = np.array(cpu["padded"]) / np.array(cpu["bucketed"])
    print(
        f"speed-up: {np.median(wall):.2f}x in steps/s, {np.median(work):.2f}x in CPU time per"
        " step (medians of the rounds' ratios)"
    )


if __name__ == "__main__":
    main()
