"""Tutorial 2: the Keras sentiment models as Flax NNX modules, trained on movie reviews.

The page ``docs/tutorials/sentiment.md`` shows all of this file, in order: its code blocks,
pasted into one file, are this script. Run it from any folder: it reads the review fixture
``tests/fixtures/aclImdb`` of the rnnjax clone it imports, or set ``DATA_DIR`` to your aclImdb
folder (without reviews there it stops at once, naming the folder); ``RNNJAX_QUICK=1`` runs a
small setting (what CI runs). The page's figure is the
``sentiment_training.png`` it writes.
"""

# --8<-- [start:settings]
import os
import re
from collections import Counter
from pathlib import Path

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import rnnjax.nnx

QUICK = os.environ.get("RNNJAX_QUICK") == "1"  # a small setting, for a quick check
# Your aclImdb folder; by default the ten-review fixture of the rnnjax clone imported here.
DATA_DIR = Path(rnnjax.__file__).parents[1] / "tests" / "fixtures" / "aclImdb"
STEPS = 20 if QUICK or "fixtures" in DATA_DIR.parts else 2000  # per model
BATCH_SIZE, MAXLEN = 32, 100
# --8<-- [end:settings]


# --8<-- [start:data]
def load_reviews(data_dir, split):
    """``(texts, labels)`` from ``data_dir/split/{pos,neg}/*.txt``; label 1 is positive."""
    texts, labels = [], []
    for label, polarity in ((1, "pos"), (0, "neg")):
        folder = Path(data_dir) / split / polarity
        paths = sorted(folder.glob("*.txt"))
        if not paths:  # a missing folder, or one without reviews: stop before any training
            state = "holds no reviews (*.txt)" if folder.is_dir() else "not found"
            raise FileNotFoundError(
                f"{folder} {state}: DATA_DIR ({data_dir}) must be an aclImdb folder, holding"
                " train/pos, train/neg, test/pos and test/neg, one review per *.txt file"
            )
        texts += [path.read_text(encoding="utf-8") for path in paths]
        labels += [label] * len(paths)
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


# --8<-- [start:run]
train_texts, train_labels = load_reviews(DATA_DIR, "train")
test_texts, test_labels = load_reviews(DATA_DIR, "test")
counts = Counter(word for text in train_texts for word in tokenize(text))
labels = np.concatenate([train_labels, test_labels])
curves = {}
for name, make, learning_rate in [("Sentiment", Sentiment, 1e-2), ("IMDB", IMDB, 1e-3)]:
    model = make(nnx.Rngs(params=0, dropout=1))
    vocab_size = model.embed.num_embeddings
    words = [word for word, _ in counts.most_common(vocab_size - 2)]
    vocabulary = {word: i + 2 for i, word in enumerate(words)}
    tokens, lengths = encode(train_texts + test_texts, vocabulary, MAXLEN)
    train = (tokens[: len(train_texts)], lengths[: len(train_texts)], train_labels)
    curves[name] = fit(
        model, train, steps=STEPS, batch_size=BATCH_SIZE, learning_rate=learning_rate
    )
    correct = (logits_in_chunks(model, tokens, lengths) > 0) == (labels > 0.5)
    train_accuracy = correct[: len(train_texts)].mean()
    test_accuracy = correct[len(train_texts) :].mean()
    print(
        f"{name}: {len(train_labels)} training reviews, loss {curves[name][0]:.3f} ->"
        f" {curves[name][-1]:.3f}, accuracy: train {train_accuracy:.2f}, test {test_accuracy:.2f}"
    )
# --8<-- [end:run]

# --8<-- [start:checks]
tokens, lengths = tokens[:512], lengths[:512]  # the IMDB model and some reviews
# Padding never changes a prediction: the same reviews padded to twice the length.
padded = np.pad(tokens, ((0, 0), (0, MAXLEN)), constant_values=7)  # junk ids, not zeros
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

# --8<-- [start:plot]
figure, axis = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
for name, losses in curves.items():
    axis.plot(np.arange(1, len(losses) + 1), losses, label=name)
axis.set(xlabel="training step", ylabel="binary cross-entropy", title="Training loss")
axis.legend()
axis.grid(True, alpha=0.3)
figure.savefig("sentiment_training.png", dpi=120)
print("wrote sentiment_training.png")
# --8<-- [end:plot]
