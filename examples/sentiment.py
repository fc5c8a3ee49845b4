"""Sentiment of movie reviews: the Keras IMDB tutorial models, on your copy of aclImdb.

``Embedding(20000, 128) -> LSTM(128, dropout=0.2, recurrent_dropout=0.2) -> Dense(1,
sigmoid)`` (or ``--model small``: ``Embedding(10000, 16) -> LSTM(32) -> Dense(64, relu) ->
Dense(1, sigmoid)``), binary cross-entropy, Adam. The reviews come from the Large Movie Review
Dataset in its standard folder layout (``aclImdb/{train,test}/{pos,neg}/*.txt``), which you
download once yourself; nothing is fetched at run time:

    # from https://ai.stanford.edu/~amaas/data/sentiment/ : aclImdb_v1.tar.gz, then
    tar xzf aclImdb_v1.tar.gz
    python examples/sentiment.py --data-dir aclImdb

Reviews are lower-cased and split into words; the vocabulary is the ``--max-features`` most
frequent training words (1 = unknown, 0 = padding); each review keeps its first ``--maxlen``
words, as the tutorial does, and shorter ones are padded with ``seq_lengths`` marking their
ends, so padding never changes a prediction.
"""

from __future__ import annotations

import argparse
import json
import re
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

PAD, UNKNOWN = 0, 1
TOKEN = re.compile(r"[a-z0-9']+")
DATA_HELP = (
    "No --data-dir given. Download the Large Movie Review Dataset (aclImdb_v1.tar.gz) from"
    " https://ai.stanford.edu/~amaas/data/sentiment/ , unpack it with"
    " `tar xzf aclImdb_v1.tar.gz`, then run: python examples/sentiment.py --data-dir aclImdb"
)


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.replace("<br />", " ").lower())


def load_imdb(data_dir: str | Path, split: str) -> tuple[list[str], np.ndarray]:
    """Reads ``data_dir/split/{pos,neg}/*.txt``: ``(texts, labels)`` with 1 for positive.

    Raises:
      FileNotFoundError: naming the folder, if ``data_dir/split/pos`` or ``.../neg`` is missing
        or holds no ``*.txt`` review (``data_dir`` is not in the aclImdb layout).
    """
    texts, labels = [], []
    for label, polarity in ((1, "pos"), (0, "neg")):
        folder = Path(data_dir) / split / polarity
        paths = sorted(folder.glob("*.txt"))
        if not paths:
            state = "holds no reviews (*.txt)" if folder.is_dir() else "not found"
            raise FileNotFoundError(
                f"{folder} {state}: --data-dir ({data_dir}) must be the aclImdb folder, holding"
                " train/pos, train/neg, test/pos and test/neg, one review per *.txt file"
            )
        texts += [path.read_text(encoding="utf-8") for path in paths]
        labels += [label] * len(paths)
    return texts, np.array(labels, np.float32)


def build_vocabulary(texts: list[str], max_features: int) -> dict[str, int]:
    """The ``max_features - 2`` most frequent words, numbered from 2 (ties by first seen)."""
    counts = Counter(word for text in texts for word in tokenize(text))
    return {word: index + 2 for index, (word, _) in enumerate(counts.most_common(max_features - 2))}


def encode(texts: list[str], vocabulary: dict[str, int], maxlen: int) -> dict[str, np.ndarray]:
    """Word ids ``[n, maxlen]`` (first ``maxlen`` words of each text) and lengths ``[n]``."""
    ids = np.full((len(texts), maxlen), PAD, np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for row, text in enumerate(texts):
        words = [vocabulary.get(word, UNKNOWN) for word in tokenize(text)][:maxlen]
        ids[row, : len(words)] = words
        lengths[row] = len(words)
    return {"ids": ids, "lengths": lengths}


def make_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(init(key) -> params, logits(params, batch, key, deterministic))``."""
    if args.model == "small":
        features, embedding, hidden, dropout, recurrent_dropout = 10000, 16, 32, 0.0, 0.0
    else:
        features, embedding, hidden = 20000, 128, 128
        dropout, recurrent_dropout = 0.2, 0.2
    features = args.max_features or features
    lstm = rnnjax.layer(
        rnnjax.lstm(hidden),
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
    )
    glorot = jax.nn.initializers.glorot_uniform()

    def init(key: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, 4)
        params = {
            "embedding": jax.random.uniform(
                keys[0], (features, embedding), minval=-0.05, maxval=0.05
            ),
            "lstm": lstm.init(keys[1], embedding),
        }
        if args.model == "small":
            params["dense"] = {"kernel": glorot(keys[2], (hidden, 64)), "bias": jnp.zeros(64)}
            params["out"] = {"kernel": glorot(keys[3], (64, 1)), "bias": jnp.zeros(1)}
        else:
            params["out"] = {"kernel": glorot(keys[3], (hidden, 1)), "bias": jnp.zeros(1)}
        return params

    def logits(params: Any, batch: Any, key: jax.Array, deterministic: bool) -> jax.Array:
        xs = params["embedding"][batch["ids"]]
        carry, _ = lstm.apply(
            params["lstm"], xs, seq_lengths=batch["lengths"], key=key, deterministic=deterministic
        )
        h = carry.h  # each review's state after its last word
        if "dense" in params:
            h = jax.nn.relu(h @ params["dense"]["kernel"] + params["dense"]["bias"])
        return (h @ params["out"]["kernel"] + params["out"]["bias"])[..., 0]

    return init, logits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", help="the aclImdb folder (see above)")
    parser.add_argument("--model", choices=["dropout", "small"], default="dropout")
    parser.add_argument("--max-features", type=int, help="vocabulary size (model's default)")
    parser.add_argument("--maxlen", type=int, default=100, help="words kept per review")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/sentiment")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        print(DATA_HELP, file=sys.stderr)
        return 2
    if args.quick:
        args.steps, args.batch_size = 10, 4

    train_texts, train_labels = load_imdb(args.data_dir, "train")
    test_texts, test_labels = load_imdb(args.data_dir, "test")
    init, logits_fn = make_model(args)
    features = int(init(jax.random.key(0))["embedding"].shape[0])
    vocabulary = build_vocabulary(train_texts, features)
    train = {**encode(train_texts, vocabulary, args.maxlen), "labels": train_labels}
    test = {**encode(test_texts, vocabulary, args.maxlen), "labels": test_labels}

    def loss_fn(params: Any, batch: Any, key: jax.Array) -> jax.Array:
        logits = logits_fn(params, batch, key, deterministic=False)
        return optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean()

    predict = jax.jit(lambda p, b: logits_fn(p, b, jax.random.key(0), deterministic=True) > 0)

    def accuracy(params: Any) -> dict[str, float]:
        hits = [
            np.asarray(predict(params, {k: v[i : i + 512] for k, v in test.items()}))
            == test["labels"][i : i + 512]
            for i in range(0, len(test["labels"]), 512)
        ]
        return {"test_accuracy": float(np.mean(np.concatenate(hits)))}

    key_init, key_run = jax.random.split(jax.random.key(args.seed))
    trainer = training.make_trainer(loss_fn, optax.adam(args.learning_rate))
    out = Path(args.out)
    run_name = f"{args.model}-v{features}-len{args.maxlen}-seed{args.seed}"
    state = training.fit(
        trainer,
        trainer.init(init(key_init), key_run),
        training.epoch_batches(train, args.batch_size, seed=args.seed),
        args.steps,
        checkpoint_dir=out / "checkpoints" / run_name,
        checkpoint_every=500,
        metrics_path=out / f"{run_name}-metrics.jsonl",
        evaluate=accuracy,
        eval_every=500,
        progress=not args.no_progress,
    )
    report = {
        "model": args.model,
        "train_reviews": len(train_texts),
        "test_reviews": len(test_texts),
        **accuracy(state.params),
        # the training set's more common label, predicted for every test review
        "majority_baseline_accuracy": float(np.mean(test_labels == (train_labels.mean() >= 0.5))),
    }
    print(json.dumps(report, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # fit saved a checkpoint and said how to resume
        sys.exit(130)
