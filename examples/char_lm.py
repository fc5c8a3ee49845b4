"""A next-character language model: an LSTM trained on the Python standard library's source.

The text is on every machine with Python: the ``.py`` files of the standard library (sorted
by name, read as bytes, so the vocabulary is the 256 byte values). The last tenth is held out
for validation. The model reads windows of ``--length`` characters and predicts each next
one; it reports validation bits per character against a unigram baseline (the character
frequencies of the training text) and prints samples.

With ``--tbptt K`` the model trains with truncated backpropagation through time on long
windows (``--length 1024 --tbptt 64``, say): the state runs through the whole window, but
gradients stop every ``K`` characters (``rnnjax.tbptt``), so memory and cost per update grow
with ``K``, not with the window.

    python examples/char_lm.py
    python examples/char_lm.py --length 1024 --tbptt 64 --batch-size 8
    python examples/char_lm.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import sysconfig
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
import rnnjax.training as training

VOCAB = 256


def load_text(max_bytes: int) -> np.ndarray:
    """The standard library's ``.py`` files, in name order, as bytes (at most ``max_bytes``)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chunks, total = [], 0
    for path in sorted(stdlib.glob("*.py")):
        data = path.read_bytes()
        chunks.append(np.frombuffer(data, np.uint8))
        total += len(data)
        if total >= max_bytes:
            break
    return np.concatenate(chunks)[:max_bytes].astype(np.int32)


def window_batches(text: np.ndarray, length: int, batch_size: int, seed: int):
    """``get_batch(step)``: random windows of ``length + 1`` characters, a function of step."""

    def get_batch(step: int) -> dict[str, np.ndarray]:
        starts = np.random.default_rng([seed, step]).integers(0, len(text) - length - 1, batch_size)
        windows = np.stack([text[s : s + length + 1] for s in starts])
        return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}

    return get_batch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-bytes", type=int, default=2_000_000, help="text to read")
    parser.add_argument("--length", type=int, default=128, help="characters per window")
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--tbptt", type=int, help="truncate gradients every K characters")
    parser.add_argument("--sample-length", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/char_lm")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    args = parser.parse_args()
    if args.quick:
        args.max_bytes, args.steps, args.hidden, args.length = 100_000, 20, 32, 32
        args.sample_length = 40

    text = load_text(args.max_bytes)
    split = int(len(text) * 0.9)
    train_text, val_text = text[:split], text[split:]

    cell = rnnjax.lstm(args.hidden)
    lstm = rnnjax.layer(cell, fused_backward=True)  # the faster, reverse-mode-only backward
    keys = jax.random.split(jax.random.key(args.seed), 5)
    params = {
        "embedding": jax.random.normal(keys[0], (VOCAB, args.embedding)) * 0.1,
        "rnn": lstm.init(keys[1], args.embedding),
        "dense": {
            "kernel": jax.nn.initializers.glorot_uniform()(keys[2], (args.hidden, VOCAB)),
            "bias": jnp.zeros(VOCAB),
        },
    }

    def logits_fn(params: Any, inputs: jax.Array) -> jax.Array:
        xs = params["embedding"][inputs]
        if args.tbptt:
            _, hs = rnnjax.tbptt(lstm, params["rnn"], xs, chunk_length=args.tbptt)
        else:
            _, hs = lstm.apply(params["rnn"], xs)
        return hs @ params["dense"]["kernel"] + params["dense"]["bias"]

    def loss_fn(params: Any, batch: Any, key: jax.Array) -> jax.Array:
        logits = logits_fn(params, batch["inputs"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()

    val_batch = window_batches(val_text, args.length, 64, seed=10_000)(0)
    val_loss = jax.jit(lambda params: loss_fn(params, val_batch, keys[4]))

    def evaluate(params: Any) -> dict[str, float]:
        return {"val_bits_per_char": float(val_loss(params)) / math.log(2)}

    trainer = training.make_trainer(loss_fn, optax.adam(args.learning_rate))
    out = Path(args.out)
    run_name = f"lstm-h{args.hidden}-e{args.embedding}-t{args.length}-k{args.tbptt}-seed{args.seed}"
    state = training.fit(
        trainer,
        trainer.init(params, keys[3]),
        window_batches(train_text, args.length, args.batch_size, args.seed),
        args.steps,
        checkpoint_dir=out / "checkpoints" / run_name,
        checkpoint_every=250,
        metrics_path=out / f"{run_name}-metrics.jsonl",
        evaluate=evaluate,
        eval_every=250,
        progress=not args.no_progress,
    )

    counts = np.bincount(train_text, minlength=VOCAB) + 1  # add-one smoothing
    unigram = counts / counts.sum()
    val_targets = val_batch["targets"].ravel()
    report = {
        "train_chars": len(train_text),
        "val_chars": len(val_text),
        "val_bits_per_char": evaluate(state.params)["val_bits_per_char"],
        "unigram_bits_per_char": float(-np.mean(np.log2(unigram[val_targets]))),
    }
    print(json.dumps(report, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    prompt = "def "
    sample = generate(cell, state.params, prompt, args.sample_length, args.temperature, keys[4])
    print(f"--- sample (temperature {args.temperature}) ---\n{sample}")


def generate(
    cell: rnnjax.Cell, params: Any, prompt: str, length: int, temperature: float, key: jax.Array
) -> str:
    """Feeds ``prompt``, then samples ``length`` characters one step at a time."""
    prompt_ids = jnp.array(list(prompt.encode()), jnp.int32)
    # All of the prompt but its last character sets the state; the last is the first input.
    carry, _ = rnnjax.rnn(cell, params["rnn"], params["embedding"][prompt_ids[:-1]])

    def step(state: tuple[Any, jax.Array], key: jax.Array) -> tuple[tuple[Any, jax.Array], Any]:
        carry, previous = state
        carry, h = cell.step(params["rnn"], carry, params["embedding"][previous])
        logits = h @ params["dense"]["kernel"] + params["dense"]["bias"]
        char = jax.random.categorical(key, logits / temperature)
        return (carry, char), char

    keys = jax.random.split(key, length)
    _, chars = jax.jit(lambda c, k: jax.lax.scan(step, (c, prompt_ids[-1]), k))(carry, keys)
    return prompt + bytes(np.asarray(chars, np.uint8)).decode("utf-8", errors="replace")


if __name__ == "__main__":
    main()
