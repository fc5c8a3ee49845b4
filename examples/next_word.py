"""Next-word prediction: a word-level LSTM language model on Python's own help texts.

The text is the help topics that ship with Python (``pydoc_data.topics``: the language
reference behind ``help("return")``, about 465,000 characters of English prose and code).
Words are lower-cased runs of letters, digits and ``_``; each other non-space character is a
token of its own (a run of the same one, like ``**`` or ``...``, is one token); the lines
that only underline a heading or draw a table border are left out. The vocabulary is the
``--vocabulary`` most frequent training tokens, the rest ``<unk>``.

Whole topics are held out (``help("return")`` is either in training or not): the topics are
shuffled and about a tenth of the tokens go to validation, a tenth to test. The model is the
Keras next-word model, ``Embedding -> LSTM -> Dense(vocabulary)``, trained on windows of the
training topics with dropout, keeping the params of the best validation perplexity. The test
perplexity is reported against a unigram (add-one) and an interpolated bigram baseline
(``lambda * P(w | v) + (1 - lambda) * P_unigram(w)``, counts from training, ``lambda`` chosen
on validation), all three scored on the same test tokens. Then the model continues
``--prompt`` with ``rnnjax.decode``: greedy, sampled (``--temperature``, ``--top-k``) and
beam search.

    python examples/next_word.py
    python examples/next_word.py --prompt "a class definition" --temperature 0.7
    python examples/next_word.py --quick
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
import rnnjax.training as training

UNKNOWN = "<unk>"
TOKEN = re.compile(r"[a-z0-9_]+|([^\sa-z0-9_])\1*")
RULE = re.compile(r"[\s*=~^+|-]*")  # a heading's underline, a table's border
NO_SPACE_BEFORE = {".", ",", ":", ";", ")", "]", "}", "?", "!"}
NO_SPACE_AFTER = {"(", "[", "{"}


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation tokens of ``text``, rule lines left out.

    >>> tokenize('The "return" statement: return x**2...')
    ['the', '"', 'return', '"', 'statement', ':', 'return', 'x', '**', '2', '...']
    """
    lines = [line for line in text.lower().splitlines() if not RULE.fullmatch(line)]
    return [match.group() for match in TOKEN.finditer("\n".join(lines))]


def detokenize(tokens: Sequence[str]) -> str:
    """Tokens back to text: spaces between them, none before closing punctuation or after
    an opening bracket."""
    text = ""
    for token in tokens:
        if text and token not in NO_SPACE_BEFORE and text[-1] not in NO_SPACE_AFTER:
            text += " "
        text += token
    return text


def load_topics() -> dict[str, list[str]]:
    """Each help topic's tokens, by topic name."""
    from pydoc_data.topics import topics

    return {name: tokenize(topics[name]) for name in sorted(topics)}


def split_topics(sizes: dict[str, int], seed: int, held_out: float = 0.1) -> dict[str, list[str]]:
    """Topic names for ``train``, ``val`` and ``test``: the topics in a seeded random order,
    test and then validation filled until each has ``held_out`` of the tokens."""
    names = sorted(sizes)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    total = sum(sizes.values())
    parts: dict[str, list[str]] = {"test": [], "val": [], "train": []}
    part_names = iter(("test", "val"))
    current = next(part_names)
    for name in order:
        if current != "train" and sum(sizes[n] for n in parts[current]) >= held_out * total:
            current = next(part_names, "train")
        parts[current].append(name)
    return parts


def build_vocabulary(tokens: Sequence[str], size: int) -> list[str]:
    """``<unk>`` (id 0) and the ``size - 1`` most frequent tokens, most frequent first (ties:
    the token seen first)."""
    return [UNKNOWN, *[token for token, _ in Counter(tokens).most_common(size - 1)]]


def encode(tokens: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """Token ids, ``<unk>`` (0) for tokens outside the vocabulary."""
    index = {token: i for i, token in enumerate(vocabulary)}
    return np.array([index.get(token, 0) for token in tokens], np.int32)


def rows(ids: np.ndarray, length: int) -> np.ndarray:
    """``ids`` cut into ``[n, length]`` rows (the rest dropped). Models are scored on each
    row's tokens after the first, given the tokens before them in the row."""
    n = len(ids) // length
    return ids[: n * length].reshape(n, length)


def unigram_probabilities(train_ids: np.ndarray, vocabulary_size: int) -> np.ndarray:
    """Add-one unigram probabilities ``[vocabulary_size]`` from the training ids."""
    counts = np.bincount(train_ids, minlength=vocabulary_size) + 1.0
    return counts / counts.sum()


def bigram_log_probs(
    train_ids: np.ndarray,
    previous: np.ndarray,
    targets: np.ndarray,
    vocabulary_size: int,
    lam: float,
) -> np.ndarray:
    """``log P(target | previous)`` of the interpolated bigram model,
    ``lam * c(v, w) / c(v) + (1 - lam) * P_unigram(w)`` (just the unigram for an unseen
    ``v``), with counts from ``train_ids``."""
    unigram = unigram_probabilities(train_ids, vocabulary_size)
    pairs = Counter(zip(train_ids[:-1].tolist(), train_ids[1:].tolist(), strict=True))
    contexts = np.bincount(train_ids[:-1], minlength=vocabulary_size)
    pair_counts = np.array(
        [pairs.get((v, w), 0) for v, w in zip(previous.tolist(), targets.tolist(), strict=True)],
        np.float64,
    )
    seen = contexts[previous] > 0
    conditional = np.where(seen, pair_counts / np.maximum(contexts[previous], 1), 0.0)
    weight = np.where(seen, lam, 0.0)
    return np.log(weight * conditional + (1 - weight) * unigram[targets])


def perplexity(log_probs: np.ndarray) -> float:
    return float(np.exp(-np.mean(log_probs)))


def window_batches(ids: np.ndarray, length: int, batch_size: int, seed: int):
    """``get_batch(step)``: random windows of ``length + 1`` tokens, a function of step."""

    def get_batch(step: int) -> dict[str, np.ndarray]:
        starts = np.random.default_rng([seed, step]).integers(0, len(ids) - length - 1, batch_size)
        windows = np.stack([ids[s : s + length + 1] for s in starts])
        return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}

    return get_batch


class LanguageModel:
    """``Embedding -> LSTM -> Dense``: params, the loss, per-token log-probabilities and the
    one-token step that :func:`rnnjax.decode` runs."""

    def __init__(self, vocabulary_size: int, embedding: int, hidden: int, dropout: float) -> None:
        self.vocabulary_size, self.embedding, self.dropout = vocabulary_size, embedding, dropout
        self.hidden, self.cell = hidden, rnnjax.lstm(hidden)
        self.layer = rnnjax.layer(self.cell, dropout=dropout)  # on the LSTM's inputs

    def init(self, key: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, 3)
        return {
            "embedding": jax.random.normal(keys[0], (self.vocabulary_size, self.embedding)) * 0.1,
            "lstm": self.cell.init(keys[1], self.embedding),
            "dense": {
                "kernel": jax.nn.initializers.glorot_uniform()(
                    keys[2], (self.hidden, self.vocabulary_size)
                ),
                "bias": jnp.zeros(self.vocabulary_size),
            },
        }

    def dense(self, params: Any, hs: jax.Array) -> jax.Array:
        return hs @ params["dense"]["kernel"] + params["dense"]["bias"]

    def logits(self, params: Any, inputs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """``[batch, time, vocabulary]`` for ``inputs [batch, time]``; dropout with ``key``."""
        xs = params["embedding"][inputs]
        deterministic = key is None
        keys = jax.random.split(jax.random.key(0) if key is None else key)
        _, hs = self.layer.apply(params["lstm"], xs, key=keys[0], deterministic=deterministic)
        if not deterministic and self.dropout > 0:
            keep = jax.random.bernoulli(keys[1], 1 - self.dropout, hs.shape)
            hs = jnp.where(keep, hs / (1 - self.dropout), 0)
        return self.dense(params, hs)

    def loss(self, params: Any, batch: Any, key: jax.Array) -> jax.Array:
        logits = self.logits(params, batch["inputs"], key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()

    def log_probs(self, params: Any, token_rows: jax.Array) -> jax.Array:
        """``log P(token_rows[:, t] | token_rows[:, :t])`` for ``t >= 1``: ``[n, length - 1]``."""
        logits = self.logits(params, token_rows[:, :-1])
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        return jnp.take_along_axis(log_probs, token_rows[:, 1:, None], axis=-1)[..., 0]

    def step(self, params: Any, carry: Any, tokens: jax.Array) -> tuple[Any, jax.Array]:
        """One token per sequence: ``(params, carry, tokens [batch]) -> (carry, logits)``;
        ``<unk>`` is never generated."""
        carry, h = self.cell.step(params["lstm"], carry, params["embedding"][tokens])
        logits = self.dense(params, h)
        return carry, logits.at[:, 0].set(-jnp.inf)

    def prompt_carry(self, params: Any, prompt: jax.Array) -> Any:
        """The carry after reading ``prompt [batch, time]``: where decoding continues from."""
        carry, _ = rnnjax.rnn(self.cell, params["lstm"], params["embedding"][prompt])
        return carry


def continue_prompt(
    model: LanguageModel,
    params: Any,
    prompt_ids: np.ndarray,
    length: int,
    method: Literal["greedy", "sample", "beam"],
    key: jax.Array,
    **options: Any,
) -> list[list[int]]:
    """Token ids after the prompt, from :func:`rnnjax.decode`: all but the prompt's last token
    set the carry, the last is the first input. Beam search gives its beams, best first."""
    ids = jnp.asarray(prompt_ids, jnp.int32)[None]
    carry = model.prompt_carry(params, ids[:, :-1])
    decoded = rnnjax.decode(
        model.step, params, carry, ids[:, -1], max_length=length, method=method, key=key, **options
    )
    tokens = np.asarray(decoded.tokens[0])
    return [row.tolist() for row in tokens] if method == "beam" else [tokens.tolist()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocabulary", type=int, default=2000, help="most frequent tokens kept")
    parser.add_argument("--length", type=int, default=64, help="tokens per training window")
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--prompt", default="the return statement")
    parser.add_argument("--generate", type=int, default=20, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--beam-width", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/next_word", help="metrics, checkpoints, report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    args = parser.parse_args()
    if args.quick:
        args.vocabulary, args.steps, args.hidden, args.embedding = 300, 20, 16, 8
        args.length, args.eval_every, args.generate, args.beam_width = 16, 20, 8, 2

    topics = load_topics()
    parts = split_topics({name: len(tokens) for name, tokens in topics.items()}, args.seed)
    streams = {
        part: [token for name in names for token in topics[name]] for part, names in parts.items()
    }
    vocabulary = build_vocabulary(streams["train"], args.vocabulary)
    ids = {part: encode(tokens, vocabulary) for part, tokens in streams.items()}
    score_length = 4 * args.length  # scored in rows of this many tokens
    scored = {part: rows(ids[part], score_length) for part in ("val", "test")}

    model = LanguageModel(len(vocabulary), args.embedding, args.hidden, args.dropout)
    log_probs = jax.jit(model.log_probs)

    def evaluate(params: Any) -> dict[str, float]:
        return {"val_perplexity": perplexity(np.asarray(log_probs(params, scored["val"])))}

    key_init, key_run, key_sample = jax.random.split(jax.random.key(args.seed), 3)
    trainer = training.make_trainer(model.loss, optax.adam(args.learning_rate))
    best = training.KeepBest("val_perplexity")
    run_name = (
        f"lstm-v{args.vocabulary}-h{args.hidden}-e{args.embedding}-t{args.length}"
        f"-d{args.dropout:g}-seed{args.seed}"
    )
    out = Path(args.out)
    began = time.perf_counter()
    training.fit(
        trainer,
        trainer.init(jax.jit(model.init)(key_init), key_run),  # one compile, not one per array
        window_batches(ids["train"], args.length, args.batch_size, args.seed),
        args.steps,
        checkpoint_dir=out / "checkpoints" / run_name,
        checkpoint_every=args.eval_every,
        metrics_path=out / f"{run_name}-metrics.jsonl",
        log_every=25,
        evaluate=evaluate,
        eval_every=args.eval_every,
        keep_best=best,
        progress=not args.no_progress,
    )
    train_seconds = time.perf_counter() - began
    params = best.params

    # The baselines, scored on the same test tokens as the model (each row's after the first).
    test_previous, test_targets = scored["test"][:, :-1].ravel(), scored["test"][:, 1:].ravel()
    val_previous, val_targets = scored["val"][:, :-1].ravel(), scored["val"][:, 1:].ravel()
    size = len(vocabulary)
    unigram = unigram_probabilities(ids["train"], size)
    lambdas = np.round(np.arange(0.05, 1.0, 0.05), 2)
    val_bigram = [
        perplexity(bigram_log_probs(ids["train"], val_previous, val_targets, size, lam))
        for lam in lambdas
    ]
    lam = float(lambdas[int(np.argmin(val_bigram))])
    test_bigram = bigram_log_probs(ids["train"], test_previous, test_targets, size, lam)
    report = {
        "topics (train/val/test)": [len(parts[p]) for p in ("train", "val", "test")],
        "tokens (train/val/test)": [len(ids[p]) for p in ("train", "val", "test")],
        "vocabulary": size,
        "test_unknown_rate": float(np.mean(test_targets == 0)),
        "steps": args.steps,
        "best_step": best.step,
        "val_perplexity": best.score,
        "test_perplexity": perplexity(np.asarray(log_probs(params, scored["test"]))),
        "unigram_test_perplexity": perplexity(np.log(unigram[test_targets])),
        "bigram_test_perplexity": perplexity(test_bigram),
        "bigram_lambda": lam,
        "train_seconds": round(train_seconds, 1),
    }
    print(json.dumps(report, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(
        f"test perplexity: LSTM {report['test_perplexity']:.1f}, bigram"
        f" {report['bigram_test_perplexity']:.1f}, unigram {report['unigram_test_perplexity']:.1f}"
    )

    prompt_ids = encode(tokenize(args.prompt), vocabulary)
    if len(prompt_ids) == 0:
        parser.error("--prompt must contain at least one token")
    prompt = detokenize([vocabulary[i] for i in prompt_ids])  # <unk> shows as such
    runs = {
        "greedy": {},
        f"sample (temperature {args.temperature:g}, top-k {args.top_k})": {
            "method": "sample",
            "temperature": args.temperature,
            "top_k": args.top_k,
        },
        f"beam search (width {args.beam_width})": {"method": "beam", "beam_width": args.beam_width},
    }
    for title, options in runs.items():
        method = options.pop("method", "greedy")
        assert method in ("greedy", "sample", "beam")
        continuations = continue_prompt(
            model, params, prompt_ids, args.generate, method, key_sample, **options
        )
        print(f"--- {title} ---")
        for tokens in continuations[:2]:
            print(detokenize([prompt, *(vocabulary[i] for i in tokens)]))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # fit saved a checkpoint and said how to resume
        sys.exit(130)
