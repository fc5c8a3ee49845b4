"""A next-character language model: an LSTM trained on the Python standard library's source.

The text is on every machine with Python: the ``.py`` files of the standard library (sorted
by name, read as bytes, so the vocabulary is the 256 byte values). The last tenth is held out
for validation. The model reads windows of ``--length`` characters and predicts each next
one; it reports validation bits per character against a unigram baseline (the character
frequencies of the training text), the wall time of training, and prints samples.

``--cell`` picks the recurrent cell: ``lstm`` (the default), ``gru``, or the parallel-in-time
``min_gru`` and ``min_lstm`` (Feng et al. 2024), whose gates read only the input, so
``rnnjax.rnn`` runs them over all time steps at once, the diagonal ``indrnn``, ``para_gru``
and ``para_lstm``, or the linear ``lru`` (``hidden / 2`` complex units) and ``rg_lru``.
``--num-layers N`` stacks ``N`` layers (``rnnjax.stack``), each after the first with a
residual connection around it, as the minGRU paper's deep models do. Sampling steps each
layer's cell one character at a time (``cell.step``) for every cell.

With ``--tbptt K`` the model trains with truncated backpropagation through time on long
windows (``--length 1024 --tbptt 64``, say): the state runs through the whole window, but
gradients stop every ``K`` characters (``rnnjax.tbptt``), so memory and cost per update grow
with ``K``, not with the window.

    python examples/char_lm.py
    python examples/char_lm.py --cell min_gru --num-layers 3
    python examples/char_lm.py --length 1024 --tbptt 64 --batch-size 8
    python examples/char_lm.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
import rnnjax.training as training

VOCAB = 256
CELLS = {
    "lstm": rnnjax.lstm,
    "gru": rnnjax.gru,
    "min_gru": rnnjax.min_gru,
    "min_lstm": rnnjax.min_lstm,
    "indrnn": rnnjax.indrnn,
    "para_gru": rnnjax.para_gru,
    "para_lstm": rnnjax.para_lstm,
    "rg_lru": rnnjax.rg_lru,
    "lru": lambda hidden: rnnjax.lru(hidden // 2),  # [Re h, Im h]: hidden outputs
}


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
    parser.add_argument("--cell", choices=sorted(CELLS), default="lstm", help="recurrent cell")
    parser.add_argument(
        "--num-layers", type=int, default=1, help="stacked layers (residual after the first)"
    )
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
    if args.num_layers < 1:
        parser.error(f"--num-layers must be at least 1; got {args.num_layers}")
    if args.quick:
        args.max_bytes, args.steps, args.hidden, args.length = 100_000, 20, 32, 32
        args.sample_length = 40

    text = load_text(args.max_bytes)
    split = int(len(text) * 0.9)
    train_text, val_text = text[:split], text[split:]

    cells = [CELLS[args.cell](args.hidden) for _ in range(args.num_layers)]
    model = build_model(cells)
    keys = jax.random.split(jax.random.key(args.seed), 5)
    params = {
        "embedding": jax.random.normal(keys[0], (VOCAB, args.embedding)) * 0.1,
        "rnn": model.init(keys[1], args.embedding),
        "dense": {
            "kernel": jax.nn.initializers.glorot_uniform()(keys[2], (args.hidden, VOCAB)),
            "bias": jnp.zeros(VOCAB),
        },
    }

    def logits_fn(params: Any, inputs: jax.Array) -> jax.Array:
        xs = params["embedding"][inputs]
        if args.tbptt:
            _, hs = rnnjax.tbptt(model, params["rnn"], xs, chunk_length=args.tbptt)
        else:
            _, hs = model.apply(params["rnn"], xs)
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
    # One layer of the default cell keeps the name it always had, so its checkpoints resume.
    layers = f"-l{args.num_layers}" if args.num_layers > 1 else ""
    run_name = (
        f"{args.cell}{layers}-h{args.hidden}-e{args.embedding}-t{args.length}-k{args.tbptt}"
        f"-seed{args.seed}"
    )
    began = time.perf_counter()
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
    train_seconds = time.perf_counter() - began  # of this run (a resumed run: the rest only)

    counts = np.bincount(train_text, minlength=VOCAB) + 1  # add-one smoothing
    unigram = counts / counts.sum()
    val_targets = val_batch["targets"].ravel()
    report = {
        "cell": args.cell,
        "num_layers": args.num_layers,
        "steps": args.steps,
        "train_chars": len(train_text),
        "val_chars": len(val_text),
        "val_bits_per_char": evaluate(state.params)["val_bits_per_char"],
        "unigram_bits_per_char": float(-np.mean(np.log2(unigram[val_targets]))),
        "train_seconds": train_seconds,
    }
    print(json.dumps(report, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    prompt = "def "
    sample = generate(cells, state.params, prompt, args.sample_length, args.temperature, keys[4])
    print(f"--- sample (temperature {args.temperature}) ---\n{sample}")
    print(
        f"{args.cell} x{args.num_layers}: validation {report['val_bits_per_char']:.3f} bits per"
        f" character (unigram {report['unigram_bits_per_char']:.3f}),"
        f" {args.steps} steps, trained in {train_seconds:.1f} s"
    )


def build_model(cells: Sequence[rnnjax.Cell]) -> rnnjax.Layer:
    """One layer per cell; several run as a stack with residual connections after the first."""
    layers = [rnnjax.layer(cell) for cell in cells]
    if len(layers) == 1:
        return layers[0]  # params as they always were: one layer's, not a tuple
    return rnnjax.stack(*layers, residual=True)


def decode_step(
    cells: Sequence[rnnjax.Cell], params: Any, carries: tuple[Any, ...], x: jax.Array
) -> tuple[tuple[Any, ...], jax.Array]:
    """One character through every layer, each ``cell.step`` with its own carry; the same
    sum as :func:`build_model`'s stack (a residual around every layer after the first)."""
    layer_params = (params,) if len(cells) == 1 else params
    new = []
    for index, (cell, p, carry) in enumerate(zip(cells, layer_params, carries, strict=True)):
        carry, h = cell.step(p, carry, x)
        x = h + x if index > 0 else h
        new.append(carry)
    return tuple(new), x


def generate(
    cells: rnnjax.Cell | Sequence[rnnjax.Cell],
    params: Any,
    prompt: str,
    length: int,
    temperature: float,
    key: jax.Array,
) -> str:
    """Feeds ``prompt``, then samples ``length`` characters one step at a time.

    ``cells``: the model's cell, or one per layer of a stack (see :func:`build_model`).
    """
    cells = [cells] if isinstance(cells, rnnjax.Cell) else list(cells)
    rnn_params = params["rnn"]
    layer_params = (rnn_params,) if len(cells) == 1 else rnn_params
    prompt_ids = jnp.array(list(prompt.encode()), jnp.int32)

    def feed(carries: tuple[Any, ...], char: jax.Array) -> tuple[tuple[Any, ...], jax.Array]:
        carries, h = decode_step(cells, rnn_params, carries, params["embedding"][char])
        return carries, h @ params["dense"]["kernel"] + params["dense"]["bias"]

    def step(state: tuple[Any, jax.Array], key: jax.Array) -> tuple[tuple[Any, jax.Array], Any]:
        carries, previous = state
        carries, logits = feed(carries, previous)
        char = jax.random.categorical(key, logits / temperature)
        return (carries, char), char

    @jax.jit
    def run(keys: jax.Array) -> jax.Array:
        carries = tuple(
            cell.initial_carry(p, ()) for cell, p in zip(cells, layer_params, strict=True)
        )
        # All of the prompt but its last character sets the state; the last is the first input.
        carries, _ = jax.lax.scan(feed, carries, prompt_ids[:-1])
        _, chars = jax.lax.scan(step, (carries, prompt_ids[-1]), keys)
        return chars

    chars = run(jax.random.split(key, length))
    return prompt + bytes(np.asarray(chars, np.uint8)).decode("utf-8", errors="replace")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # fit saved a checkpoint and said how to resume
        sys.exit(130)
