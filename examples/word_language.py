"""Which language is a word from? A character-level GRU (or LSTM) classifier.

The words are the most frequent ones of several languages in wordfreq's lists, which ship
with the package. A word listed in more than one language is dropped (it has no single
answer). Words have different lengths: they are padded and ``seq_lengths`` tells the network
where each ends, so padding never changes a prediction. Test accuracy is reported next to the
majority baseline, with a confusion-matrix plot.

    python examples/word_language.py                         # en de fr es it nl, a GRU
    python examples/word_language.py --cell lstm --languages en,fi,pl,tr
    python examples/word_language.py --quick
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
import rnnjax.training as training

CELLS = {"gru": rnnjax.gru, "lstm": rnnjax.lstm, "simple_rnn": rnnjax.simple_rnn}
PAD, UNKNOWN = 0, 1


def load_words(languages: list[str], per_language: int, max_length: int) -> tuple[list, list]:
    """``(words, labels)`` of the most frequent words, unambiguous and at most ``max_length``."""
    import wordfreq

    lists = {lang: wordfreq.top_n_list(lang, per_language) for lang in languages}
    counts = Counter(word for words in lists.values() for word in set(words))
    pairs = [
        (word, label)
        for label, lang in enumerate(languages)
        for word in lists[lang]
        if counts[word] == 1 and word.isalpha() and len(word) <= max_length
    ]
    return [w for w, _ in pairs], [label for _, label in pairs]


def encode(words: list[str], alphabet: dict[str, int], max_length: int) -> dict[str, np.ndarray]:
    """Character ids ``[n, max_length]`` (0 = padding, 1 = unknown) and lengths ``[n]``."""
    ids = np.full((len(words), max_length), PAD, np.int32)
    for row, word in enumerate(words):
        ids[row, : len(word)] = [alphabet.get(ch, UNKNOWN) for ch in word]
    return {"ids": ids, "lengths": np.array([len(w) for w in words], np.int32)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--languages", default="en,de,fr,es,it,nl")
    parser.add_argument("--words", type=int, default=5000, help="most frequent words per language")
    parser.add_argument("--max-length", type=int, default=16, help="longer words are left out")
    parser.add_argument("--cell", choices=sorted(CELLS), default="gru")
    parser.add_argument("--embedding", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/word_language")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    args = parser.parse_args()
    if args.quick:
        args.words, args.steps, args.hidden = 300, 20, 16
    languages = args.languages.split(",")

    words, labels = load_words(languages, args.words, args.max_length)
    order = np.random.default_rng(args.seed).permutation(len(words))
    n_test = n_val = len(words) // 10
    parts = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    train_chars = sorted({ch for i in parts["train"] for ch in words[i]})
    alphabet = {ch: index + 2 for index, ch in enumerate(train_chars)}  # from train only
    labels_array = np.array(labels, np.int32)
    data = {
        name: {
            **encode([words[i] for i in rows], alphabet, args.max_length),
            "labels": labels_array[rows],
        }
        for name, rows in parts.items()
    }

    cell = CELLS[args.cell](args.hidden)
    keys = jax.random.split(jax.random.key(args.seed), 4)
    params = {
        "embedding": jax.random.normal(keys[0], (len(alphabet) + 2, args.embedding)) * 0.1,
        "rnn": cell.init(keys[1], args.embedding),
        "dense": {
            "kernel": jax.nn.initializers.glorot_uniform()(keys[2], (args.hidden, len(languages))),
            "bias": jnp.zeros(len(languages)),
        },
    }

    def logits_fn(params: Any, batch: Any) -> jax.Array:
        xs = params["embedding"][batch["ids"]]  # [batch, time, embedding]
        carry, _ = rnnjax.rnn(cell, params["rnn"], xs, seq_lengths=batch["lengths"])
        h = cell.output(carry)  # after each word's end
        return h @ params["dense"]["kernel"] + params["dense"]["bias"]

    def loss_fn(params: Any, batch: Any, key: jax.Array) -> jax.Array:
        logits = logits_fn(params, batch)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

    predict = jax.jit(lambda params, batch: jnp.argmax(logits_fn(params, batch), -1))

    def accuracy(params: Any, part: str) -> float:
        return float(np.mean(np.asarray(predict(params, data[part])) == data[part]["labels"]))

    trainer = training.make_trainer(loss_fn, optax.adam(args.learning_rate))
    out = Path(args.out)
    run_name = f"{args.cell}-h{args.hidden}-e{args.embedding}-{'-'.join(languages)}-seed{args.seed}"
    state = training.fit(
        trainer,
        trainer.init(params, keys[3]),
        training.epoch_batches(data["train"], args.batch_size, seed=args.seed),
        args.steps,
        checkpoint_dir=out / "checkpoints" / run_name,
        checkpoint_every=500,
        metrics_path=out / f"{run_name}-metrics.jsonl",
        evaluate=lambda params: {"val_accuracy": accuracy(params, "val")},
        eval_every=500,
        progress=not args.no_progress,
    )

    majority = Counter(data["train"]["labels"].tolist()).most_common(1)[0][0]
    predictions = np.asarray(predict(state.params, data["test"]))
    truth = data["test"]["labels"]
    report = {
        "languages": languages,
        "words (train/val/test)": [len(parts[p]) for p in ("train", "val", "test")],
        "cell": args.cell,
        "test_accuracy": float(np.mean(predictions == truth)),
        "majority_baseline_accuracy": float(np.mean(truth == majority)),
        "val_accuracy": accuracy(state.params, "val"),
    }
    print(json.dumps(report, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    confusion = np.zeros((len(languages), len(languages)), np.int64)
    np.add.at(confusion, (truth, predictions), 1)
    plot_confusion(out / "confusion.png", confusion, languages, report["test_accuracy"])


def plot_confusion(
    path: Path, confusion: np.ndarray, languages: list[str], accuracy: float
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(6, 5), constrained_layout=True)
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(confusion):
        color = "white" if rates[row, col] > 0.5 else "black"
        axis.text(col, row, str(count), ha="center", va="center", color=color, fontsize=9)
    axis.set_xticks(range(len(languages)), languages)
    axis.set_yticks(range(len(languages)), languages)
    axis.set(xlabel="predicted", ylabel="true", title=f"Test words (accuracy {accuracy:.1%})")
    figure.colorbar(image, label="share of the true language's words")
    figure.savefig(path, dpi=120)
    print(f"saved {path}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # fit saved a checkpoint and said how to resume
        sys.exit(130)
