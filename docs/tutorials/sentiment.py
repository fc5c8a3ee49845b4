"""Tutorial 2: the Keras sentiment models as Flax NNX modules, trained on movie reviews.

``Embedding -> LSTM(32) -> Dense(64, relu) -> Dense(1, sigmoid)`` and the IMDB model with
dropout and recurrent dropout, ``Embedding(20000, 128) -> LSTM(128, dropout=0.2,
recurrent_dropout=0.2) -> Dense(1, sigmoid)``. The reviews come from a folder in the Large
Movie Review Dataset's layout (``aclImdb/{train,test}/{pos,neg}/*.txt``). The IMDB data cannot
ship with rnnjax, so by default (and in CI) this runs on the ten-review fixture in
``tests/fixtures/aclImdb``, where all a model can show is that it fits its six training
reviews; give ``--data-dir`` your own copy of aclImdb for the real run.

    python docs/tutorials/sentiment.py --data-dir aclImdb   # the real data (download it first)
    python docs/tutorials/sentiment.py --quick              # what CI runs, on the fixture

The page ``docs/tutorials/sentiment.md`` shows this file section by section.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

# --8<-- [start:imports]
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import rnnjax.nnx

# --8<-- [end:imports]

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "aclImdb"


# --8<-- [start:data]
def load_reviews(data_dir, split):
    """``(texts, labels)`` from ``data_dir/split/{pos,neg}/*.txt``; label 1 is positive."""
    texts, labels = [], []
    for label, polarity in ((1, "pos"), (0, "neg")):
        for path in sorted((Path(data_dir) / split / polarity).glob("*.txt")):
            texts.append(path.read_text(encoding="utf-8"))
            labels.append(label)
    return texts, np.array(labels, np.float32)


def tokenize(text):
    return re.findall(r"[a-z0-9']+", text.replace("<br />", " ").lower())


def encode(texts, vocabulary, maxlen):
    """Word ids ``[n, maxlen]`` (0 pads, 1 is an unknown word) and lengths ``[n]``."""
    ids = np.zeros((len(texts), maxlen), np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for row, text in enumerate(texts):
        words = [vocabulary.get(word, 1) for word in tokenize(text)][:maxlen]  # first words
        ids[row, : len(words)], lengths[row] = words, len(words)
    return ids, lengths


# --8<-- [end:data]


# --8<-- [start:models]
class Sentiment(nnx.Module):  # Embedding(10000, 16) -> LSTM(32) -> Dense(64, relu) -> Dense(1)
    def __init__(self, rngs, vocab_size=10000):
        self.embed = nnx.Embed(vocab_size, 16, rngs=rngs)
        self.lstm = rnnjax.nnx.LSTM(16, 32, rngs=rngs)
        self.hidden = nnx.Linear(32, 64, rngs=rngs)
        self.out = nnx.Linear(64, 1, rngs=rngs)

    def __call__(self, tokens, seq_lengths=None):  # [batch, time] -> logits [batch]
        h = self.lstm(self.embed(tokens), seq_lengths=seq_lengths)  # output at each last word
        return self.out(nnx.relu(self.hidden(h)))[:, 0]


class IMDB(nnx.Module):  # Embedding(20000, 128) -> LSTM(128, dropouts 0.2) -> Dense(1)
    def __init__(self, rngs, vocab_size=20000):
        self.embed = nnx.Embed(vocab_size, 128, rngs=rngs)
        self.lstm = rnnjax.nnx.LSTM(128, 128, dropout=0.2, recurrent_dropout=0.2, rngs=rngs)
        self.out = nnx.Linear(128, 1, rngs=rngs)

    def __call__(self, tokens, seq_lengths=None):
        h = self.lstm(self.embed(tokens), seq_lengths=seq_lengths)
        return self.out(h)[:, 0]


# --8<-- [end:models]


# --8<-- [start:train]
@nnx.jit
def train_step(model, optimizer, tokens, lengths, labels):
    def loss_fn(model):  # binary cross-entropy on logits: the sigmoid is inside the loss
        logits = model(tokens, seq_lengths=lengths)
        return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def predict(model, tokens, lengths):  # logits [batch]
    return model(tokens, seq_lengths=lengths)


def logits_in_chunks(model, tokens, lengths, chunk=512):
    return np.concatenate(
        [
            predict(model, tokens[i : i + chunk], lengths[i : i + chunk])
            for i in range(0, len(tokens), chunk)
        ]
    )


def fit(model, train, *, steps, batch_size, learning_rate, seed=0):
    optimizer = nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)
    labels = train[-1]
    order = np.random.default_rng(seed)
    losses = []
    model.train()  # dropout on (a no-op for the model without dropout)
    for _ in range(steps):
        batch = order.choice(len(labels), min(batch_size, len(labels)), replace=False)
        losses.append(float(train_step(model, optimizer, *(a[batch] for a in train))))
    model.eval()  # dropout off, for evaluation
    return losses


# --8<-- [end:train]


def main(
    quick: bool = False, data_dir: str | Path = FIXTURE, steps: int | None = None
) -> dict[str, Any]:
    """Trains both models; returns losses, accuracies and the checks the page describes."""
    on_fixture = Path(data_dir).resolve() == FIXTURE
    if steps is None:
        steps = 20 if quick or on_fixture else 2000
    batch_size, maxlen = 32, 100
    results: dict[str, Any] = {}

    # --8<-- [start:run]
    train_texts, train_labels = load_reviews(data_dir, "train")
    test_texts, test_labels = load_reviews(data_dir, "test")
    counts = Counter(word for text in train_texts for word in tokenize(text))
    labels = np.concatenate([train_labels, test_labels])
    for name, make, learning_rate in [("Sentiment", Sentiment, 1e-2), ("IMDB", IMDB, 1e-3)]:
        model = make(nnx.Rngs(params=0, dropout=1))
        vocab_size = model.embed.num_embeddings
        words = [word for word, _ in counts.most_common(vocab_size - 2)]
        vocabulary = {word: i + 2 for i, word in enumerate(words)}
        tokens, lengths = encode(train_texts + test_texts, vocabulary, maxlen)
        train = (tokens[: len(train_texts)], lengths[: len(train_texts)], train_labels)
        losses = fit(model, train, steps=steps, batch_size=batch_size, learning_rate=learning_rate)
        correct = (logits_in_chunks(model, tokens, lengths) > 0) == (labels > 0.5)
        train_accuracy = correct[: len(train_texts)].mean()
        test_accuracy = correct[len(train_texts) :].mean()
        print(
            f"{name}: {len(train_labels)} training reviews, loss {losses[0]:.3f} ->"
            f" {losses[-1]:.3f}, accuracy: train {train_accuracy:.2f}, test {test_accuracy:.2f}"
        )
        results[name] = {
            "losses": losses,
            "train_accuracy": float(train_accuracy),
            "test_accuracy": float(test_accuracy),
        }
    # --8<-- [end:run]

    # --8<-- [start:checks]
    tokens, lengths = tokens[:512], lengths[:512]  # the IMDB model and some reviews
    # Padding never changes a prediction: the same reviews padded to twice the length.
    padded = np.pad(tokens, ((0, 0), (0, maxlen)), constant_values=7)  # junk ids, not zeros
    difference = jnp.max(jnp.abs(predict(model, padded, lengths) - predict(model, tokens, lengths)))
    print(f"padding changes the logits by at most {float(difference):.1e}")
    # Dropout: random in training mode, off (deterministic) in evaluation mode.
    model.train()
    one, two = predict(model, tokens, lengths), predict(model, tokens, lengths)
    model.eval()
    three, four = predict(model, tokens, lengths), predict(model, tokens, lengths)
    print("training mode, two calls equal:", bool(jnp.array_equal(one, two)))
    print("evaluation mode, two calls equal:", bool(jnp.array_equal(three, four)))
    # --8<-- [end:checks]
    results["padding_difference"] = float(difference)
    results["train_mode_equal"] = bool(jnp.array_equal(one, two))
    results["eval_mode_equal"] = bool(jnp.array_equal(three, four))
    results["train_reviews"] = len(train_labels)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(FIXTURE), help="an aclImdb folder")
    parser.add_argument("--steps", type=int, help="training steps per model")
    parser.add_argument("--quick", action="store_true", help="the small setting CI runs")
    args = parser.parse_args()
    main(quick=args.quick, data_dir=args.data_dir, steps=args.steps)
