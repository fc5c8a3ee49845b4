"""Translate dates written out in many locales into ISO 8601: a seq2seq model with attention.

The data is Babel's CLDR date formats: each date from 1950 to 2049 is written by
``babel.dates.format_date`` in one of the formats ``full``, ``long``, ``medium``, ``short``
of a locale ("mardi 12 mars 2024", "12.03.24", "March 12, 2024", ...), and the target is
``2024-03-12``. A source text that two different dates produce (en_US "3/12/24" is 12 March,
es "3/12/24" is 3 December) has no single answer and is left out everywhere.

The dates are split before anything is written: the test dates never occur in training, in
any locale or format. The held-out locales (``--held-out-locales``) are not in training at
all; they are written on the test dates, and range from fair to hopeless: pt_PT has pt's
month and day names (some formats differ); da's names were never seen but look like known
ones ("marts", "maj", "tirsdag den 12. marts 2024"); pl's mostly do not ("marca", "czerwca",
"października"), so mainly its numeric forms can be read; ru is in another script, so only its
numeric form ("12.03.2024") can.

The model: a character embedding, a bidirectional LSTM encoder (``rnnjax.bidirectional``,
padded sources under ``seq_lengths``), and an LSTM decoder that starts from the encoder's
final carry (the forward and backward states side by side). With attention the decoder cell
is ``rnnjax.attention(rnnjax.lstm(...), memory, memory_lengths)``, which attends over the
encoder's outputs at every step (Luong's multiplicative score by default; ``--attention
bahdanau``, the additive one, costs about twice as much per step on a CPU); the baseline is
the same network without it. Both train
with teacher forcing (``rnnjax.rnn`` over the shifted target) and translate with
``rnnjax.decode`` (greedy, and beam search for the attention model). Exact-match accuracy
(the whole ISO date right) is reported on the held-out dates and each held-out locale, and
the attention weights of a few examples (source characters by output characters) are saved
as a heatmap.

    python examples/translate_dates.py
    python examples/translate_dates.py --attention bahdanau --held-out-locales pt_PT,ca
    python examples/translate_dates.py --quick
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
import rnnjax.training as training

Form = Literal["full", "long", "medium", "short"]
Method = Literal["greedy", "sample", "beam"]
FORMATS: tuple[Form, ...] = ("full", "long", "medium", "short")
FIRST, LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)  # "yy" is unambiguous
SOURCE_PAD, SOURCE_UNKNOWN = 0, 1
PAD, BOS, EOS = 0, 1, 2
TARGET_CHARS = "0123456789-"
TARGET_VOCAB = 3 + len(TARGET_CHARS)
TARGET_LENGTH = len("2024-03-12") + 1  # and the end token
NUMERIC_FIELDS = ("d", "dd", "M", "MM", "y", "yy", "yyyy")  # CLDR pattern fields of numbers


def format_date(date: datetime.date, locale: str, form: str) -> str:
    """``date`` as Babel writes it in ``locale``'s ``form`` (one of :data:`FORMATS`)."""
    from babel.dates import format_date as babel_format_date

    return babel_format_date(date, format=form, locale=locale)


def all_dates() -> list[datetime.date]:
    """Every day from :data:`FIRST` to :data:`LAST`."""
    return [FIRST + datetime.timedelta(days) for days in range((LAST - FIRST).days + 1)]


class NumericReader:
    """Every date that a text could be under the numeric formats ("3/12/24", "12.03.2024")
    of the given locales: how a text that two dates produce is found."""

    def __init__(self, locales: Sequence[str]) -> None:
        from babel.dates import get_date_format

        self.patterns = []
        for locale in locales:
            for form in FORMATS:
                pattern = get_date_format(form, locale=locale).pattern
                runs = [m.group() for m in re.finditer(r"([A-Za-z'])\1*", pattern)]
                if runs and all(run in NUMERIC_FIELDS for run in runs):
                    self.patterns.append((locale, form, self._regex(pattern)))

    @staticmethod
    def _regex(pattern: str) -> tuple[re.Pattern[str], list[str]]:
        parts, fields = [], []
        for token in re.findall(r"d+|M+|y+|[^dMy]+", pattern):
            if token[0] in "dMy":
                digits = {"d": "1,2", "M": "1,2", "yy": "2"}.get(
                    token, "2" if token[0] != "y" else "4"
                )
                parts.append(rf"(\d{{{digits}}})")
                fields.append(token)
            else:
                parts.append(re.escape(token))
        return re.compile("".join(parts)), fields

    def readings(self, text: str) -> set[datetime.date]:
        """The dates in range that some numeric format writes as exactly ``text``."""
        found = set()
        for locale, form, (regex, fields) in self.patterns:
            match = regex.fullmatch(text)
            if match is None:
                continue
            value = dict(zip([field[0] for field in fields], map(int, match.groups()), strict=True))
            year = value["y"]
            if "yy" in fields:
                year += 2000 if year < 50 else 1900
            try:
                date = datetime.date(year, value["M"], value["d"])
            except ValueError:
                continue
            if FIRST <= date <= LAST and format_date(date, locale, form) == text:
                found.add(date)
        return found


def write_dates(
    dates: Sequence[datetime.date],
    locales: Sequence[str],
    forms: Sequence[str],
    reader: NumericReader,
) -> dict[str, Any]:
    """Source texts and ISO targets of ``dates[i]`` in ``locales[i]``, ``forms[i]``; texts that
    another date also produces (``reader``) are left out, and counted under ``"ambiguous"``."""
    data: dict[str, Any] = {"texts": [], "targets": [], "locales": [], "formats": []}
    ambiguous = 0
    for date, locale, form in zip(dates, locales, forms, strict=True):
        text = format_date(date, locale, form)
        if reader.readings(text) - {date}:
            ambiguous += 1
            continue
        data["texts"].append(text)
        data["targets"].append(date.isoformat())
        data["locales"].append(locale)
        data["formats"].append(form)
    data["ambiguous"] = ambiguous
    return data


def sample(
    dates: Sequence[datetime.date],
    locales: Sequence[str],
    count: int,
    rng: np.random.Generator,
    reader: NumericReader,
) -> dict[str, Any]:
    """``count`` random (date, locale, format) triples, written out (ambiguous ones dropped)."""
    rows = rng.integers(len(dates), size=count)
    which = rng.integers(len(locales), size=count)
    forms = rng.integers(len(FORMATS), size=count)
    return write_dates(
        [dates[i] for i in rows],
        [locales[i] for i in which],
        [FORMATS[i] for i in forms],
        reader,
    )


def encode(
    data: dict[str, Any], alphabet: dict[str, int], source_length: int
) -> dict[str, np.ndarray]:
    """Source ids ``[n, source_length]`` (0 = padding, 1 = a character unseen in training),
    lengths ``[n]``, decoder inputs ``[n, 11]`` (``BOS`` + the date) and targets ``[n, 11]``
    (the date + ``EOS``)."""
    texts = data["texts"]
    ids = np.full((len(texts), source_length), SOURCE_PAD, np.int32)
    for row, text in enumerate(texts):
        ids[row, : len(text)] = [alphabet.get(char, SOURCE_UNKNOWN) for char in text]
    date_ids = np.array(
        [[3 + TARGET_CHARS.index(char) for char in target] for target in data["targets"]],
        np.int32,
    ).reshape(len(texts), TARGET_LENGTH - 1)
    column = np.ones((len(texts), 1), np.int32)
    return {
        "ids": ids,
        "lengths": np.array([len(text) for text in texts], np.int32),
        "decoder_inputs": np.concatenate([BOS * column, date_ids], axis=1),
        "targets": np.concatenate([date_ids, EOS * column], axis=1),
    }


def to_text(tokens: np.ndarray) -> str:
    """Output tokens up to the end token, as characters."""
    chars = []
    for token in np.asarray(tokens).tolist():
        if token == EOS:
            break
        chars.append(TARGET_CHARS[token - 3] if token >= 3 else "?")
    return "".join(chars)


class Seq2Seq:
    """The encoder-decoder, with or without attention: params, the teacher-forced loss, and
    translation with :func:`rnnjax.decode`."""

    def __init__(self, args: argparse.Namespace, source_vocab: int, attention: bool) -> None:
        self.args, self.source_vocab, self.attention = args, source_vocab, attention
        self.encoder = rnnjax.bidirectional(rnnjax.layer(rnnjax.lstm(args.hidden)))
        self.decoder_size = 2 * args.hidden  # starts from [forward, backward] of the encoder

    def decoder_cell(self, memory: jax.Array, lengths: jax.Array) -> rnnjax.Cell:
        cell = rnnjax.lstm(self.decoder_size)
        if not self.attention:
            return cell
        return rnnjax.attention(cell, memory, lengths, kind=self.args.attention)

    def init(self, key: jax.Array) -> dict[str, Any]:
        args, keys = self.args, jax.random.split(key, 5)
        memory = jnp.zeros((1, 4, self.decoder_size))  # the params do not depend on it
        decoder = self.decoder_cell(memory, jnp.ones(1, jnp.int32))
        decoder_params = decoder.init(keys[2], args.embedding)
        output = decoder.output(decoder.initial_carry(decoder_params, 1)).shape[-1]
        return {
            "source_embedding": jax.random.normal(keys[0], (self.source_vocab, args.embedding))
            * 0.1,
            "encoder": self.encoder.init(keys[1], args.embedding),
            "target_embedding": jax.random.normal(keys[3], (TARGET_VOCAB, args.embedding)) * 0.1,
            "decoder": decoder_params,
            "dense": {
                "kernel": jax.nn.initializers.glorot_uniform()(keys[4], (output, TARGET_VOCAB)),
                "bias": jnp.zeros(TARGET_VOCAB),
            },
        }

    def start(self, params: Any, batch: Any) -> tuple[rnnjax.Cell, Any]:
        """Encodes the sources: the decoder cell (attending over them) and its first carry."""
        xs = params["source_embedding"][batch["ids"]]
        (forward, backward), memory = self.encoder.apply(
            params["encoder"], xs, seq_lengths=batch["lengths"]
        )
        carry = rnnjax.LSTMState(
            h=jnp.concatenate([forward.h, backward.h], -1),
            c=jnp.concatenate([forward.c, backward.c], -1),
        )
        cell = self.decoder_cell(memory, batch["lengths"])
        if self.attention:
            first = cell.initial_carry(params["decoder"], batch["ids"].shape[0])
            carry = first._replace(cell=carry)
        return cell, carry

    def logits(self, params: Any, ys: jax.Array) -> jax.Array:
        return ys @ params["dense"]["kernel"] + params["dense"]["bias"]

    def loss(self, params: Any, batch: Any, key: jax.Array) -> jax.Array:
        """Teacher forcing: the decoder reads the true previous character at every step."""
        cell, carry = self.start(params, batch)
        inputs = params["target_embedding"][batch["decoder_inputs"]]
        _, ys = rnnjax.rnn(cell, params["decoder"], inputs, initial_carry=carry)
        logits = self.logits(params, ys)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()

    @partial(jax.jit, static_argnums=(0, 3))
    def translate(self, params: Any, batch: Any, method: Method = "greedy") -> jax.Array:
        """Output tokens ``[batch, 11]``: greedy, or the best beam (``--beam-width``)."""
        cell, carry = self.start(params, batch)

        def step_fn(params: Any, carry: Any, tokens: jax.Array) -> tuple[Any, jax.Array]:
            x = params["target_embedding"][tokens]
            carry, y = cell.step(params["decoder"], carry, x)
            return carry, self.logits(params, y)

        decoded = rnnjax.decode(
            step_fn,
            params,
            carry,
            jnp.full(batch["ids"].shape[0], BOS, jnp.int32),
            max_length=TARGET_LENGTH,
            method=method,
            eos_id=EOS,
            beam_width=self.args.beam_width,
            pad_id=PAD,
        )
        return decoded.tokens[:, 0] if method == "beam" else decoded.tokens

    @partial(jax.jit, static_argnums=0)
    def attention_weights(self, params: Any, batch: Any, tokens: jax.Array) -> jax.Array:
        """``[batch, 11, source_length]``: the weights of each output step over the source,
        stepping the decoder cell over ``BOS`` and ``tokens`` (its own output)."""
        cell, carry = self.start(params, batch)
        inputs = jnp.concatenate([jnp.full_like(tokens[:, :1], BOS), tokens[:, :-1]], axis=1)

        def step(carry: Any, token: jax.Array) -> tuple[Any, jax.Array]:
            carry, _ = cell.step(params["decoder"], carry, params["target_embedding"][token])
            return carry, carry.weights

        _, weights = jax.lax.scan(step, carry, inputs.T)
        return jnp.swapaxes(weights, 0, 1)


def chunks(arrays: dict[str, np.ndarray], size: int):
    """Fixed-size chunks (the last padded by repeating its first row) and each one's count."""
    total = len(arrays["ids"])
    for start in range(0, total, size):
        rows = np.arange(start, start + size)
        rows[rows >= total] = start
        yield {name: value[rows] for name, value in arrays.items()}, min(size, total - start)


def exact_match(
    model: Seq2Seq,
    params: Any,
    arrays: dict[str, np.ndarray],
    targets: Sequence[str],
    method: Method,
) -> tuple[float, list[str]]:
    """The fraction of outputs equal to the ISO target, and the outputs."""
    outputs: list[str] = []
    for chunk, count in chunks(arrays, model.args.eval_batch):
        tokens = np.asarray(model.translate(params, chunk, method))
        outputs += [to_text(row) for row in tokens[:count]]
    correct = [output == target for output, target in zip(outputs, targets, strict=True)]
    return float(np.mean(correct)) if correct else float("nan"), outputs


def train(
    model: Seq2Seq, name: str, data: dict[str, Any], args: argparse.Namespace
) -> tuple[Any, float]:
    """Trains with teacher forcing; returns the params of the best validation exact match."""
    key_init, key_run = jax.random.split(jax.random.key(args.seed))
    trainer = training.make_trainer(model.loss, optax.adam(args.learning_rate))
    best = training.KeepBest("val_exact_match", mode="max")

    def evaluate(params: Any) -> dict[str, float]:
        accuracy, _ = exact_match(model, params, data["val"], data["val_targets"], "greedy")
        return {"val_exact_match": accuracy}

    kind = f"-{args.attention}" if model.attention else ""
    run_name = (
        f"{name}{kind}-h{args.hidden}-e{args.embedding}-n{args.train_examples}"
        f"-b{args.batch_size}-lr{args.learning_rate:g}-{args.locales.replace(',', '-')}"
        f"-seed{args.seed}"
    )
    out = Path(args.out)
    began = time.perf_counter()
    training.fit(
        trainer,
        trainer.init(jax.jit(model.init)(key_init), key_run),  # one compile, not one per array
        training.epoch_batches(data["train"], args.batch_size, seed=args.seed),
        args.steps,
        checkpoint_dir=out / "checkpoints" / run_name,
        checkpoint_every=args.eval_every,
        metrics_path=out / f"{run_name}-metrics.jsonl",
        log_every=50,
        evaluate=evaluate,
        eval_every=args.eval_every,
        keep_best=best,
        progress=not args.no_progress,
    )
    return best.params, time.perf_counter() - began


def plot_attention(path: Path, weights: np.ndarray, texts: list[str], outputs: list[str]) -> None:
    """One heatmap per example: output characters (rows) by source characters (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(texts), 1, figsize=(8, 2.8 * len(texts)), constrained_layout=True, squeeze=False
    )
    for axis, weight, text, output in zip(axes[:, 0], weights, texts, outputs, strict=False):
        rows = [*output, "</s>"][: weight.shape[0]]
        image = axis.imshow(
            weight[: len(rows), : len(text)], cmap="viridis", vmin=0, vmax=1, aspect="auto"
        )
        axis.set_xticks(range(len(text)), list(text))
        axis.set_yticks(range(len(rows)), rows)
        axis.set(xlabel="source character", ylabel="output character")
        axis.set_title(f"{text!r} -> {output}")
        axis.tick_params(length=0)
        figure.colorbar(image, ax=axis, label="attention weight", fraction=0.03, pad=0.01)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--locales", default="en_US,en_GB,fr,de,es,it,nl,pt")
    parser.add_argument(
        "--held-out-locales", default="pt_PT,da,pl,ru", help="locales never seen in training"
    )
    parser.add_argument("--train-examples", type=int, default=50_000)
    parser.add_argument("--test-examples", type=int, default=2000, help="and per held-out locale")
    parser.add_argument(
        "--attention", choices=["bahdanau", "luong"], default="luong", help="score function"
    )
    parser.add_argument("--embedding", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64, help="per encoder direction")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--beam-width", type=int, default=4)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument(
        "--eval-batch", type=int, default=500, help="examples per decoding call (one shape)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default="runs/translate_dates", help="heatmap, metrics, checkpoints"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    args = parser.parse_args()
    if args.quick:
        args.train_examples, args.test_examples, args.steps = 2000, 100, 30
        args.hidden, args.embedding, args.eval_every, args.beam_width = 16, 8, 30, 2
        args.eval_batch = 50
    locales, held_out = args.locales.split(","), args.held_out_locales.split(",")

    # Split the dates first: a test date is never seen in training, in any locale or format.
    rng = np.random.default_rng(args.seed)
    dates = all_dates()
    order = rng.permutation(len(dates))
    n_test = n_val = len(dates) // 10
    test_dates = [dates[i] for i in order[:n_test]]
    val_dates = [dates[i] for i in order[n_test : n_test + n_val]]
    train_dates = [dates[i] for i in order[n_test + n_val :]]
    reader = NumericReader([*locales, *held_out])
    written = {
        "train": sample(train_dates, locales, args.train_examples, rng, reader),
        "val": sample(val_dates, locales, min(args.test_examples, 1000), rng, reader),
        "test": sample(test_dates, locales, args.test_examples, rng, reader),
    }
    for locale in held_out:
        written[locale] = sample(test_dates, [locale], args.test_examples, rng, reader)
    chars = sorted({char for text in written["train"]["texts"] for char in text})
    alphabet = {char: index + 2 for index, char in enumerate(chars)}  # from training only
    longest = max(len(text) for part in written.values() for text in part["texts"])
    source_length = -(-longest // 8) * 8
    data: dict[str, Any] = {
        name: encode(part, alphabet, source_length) for name, part in written.items()
    }
    data["val_targets"] = written["val"]["targets"]

    report: dict[str, Any] = {
        "locales": locales,
        "held_out_locales": held_out,
        "examples": {name: len(part["texts"]) for name, part in written.items()},
        "ambiguous_left_out": sum(part["ambiguous"] for part in written.values()),
        "source_alphabet": len(alphabet),
        "steps": args.steps,
    }
    results = {}
    for name in ("attention", "baseline"):
        model = Seq2Seq(args, len(alphabet) + 2, attention=name == "attention")
        params, seconds = train(model, name, data, args)
        report[f"{name}_train_seconds"] = round(seconds, 1)
        methods: list[Method] = ["greedy", "beam"] if name == "attention" else ["greedy"]
        for method in methods:
            suffix = "" if method == "greedy" else "_beam"
            for part in ("test", *held_out):
                accuracy, outputs = exact_match(
                    model, params, data[part], written[part]["targets"], method
                )
                report[f"{name}{suffix}_{part}_exact_match"] = accuracy
                if method == "greedy":
                    results[name, part] = outputs
        by_format = {}
        for form in FORMATS:
            rows = [i for i, f in enumerate(written["test"]["formats"]) if f == form]
            hits = [results[name, "test"][i] == written["test"]["targets"][i] for i in rows]
            by_format[form] = float(np.mean(hits)) if hits else float("nan")
        report[f"{name}_test_exact_match_by_format"] = by_format
        if name == "attention":
            attention_model, attention_params = model, params
        print(
            f"{name}: held-out dates {report[f'{name}_test_exact_match']:.3f}, "
            + ", ".join(f"{loc} {report[f'{name}_{loc}_exact_match']:.3f}" for loc in held_out),
            flush=True,
        )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(report, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print("--- held-out dates and locales (attention, greedy) ---")
    shown = [("test", i) for i in range(4)] + [(loc, 0) for loc in held_out]
    for part, i in shown:
        text, target = written[part]["texts"][i], written[part]["targets"][i]
        got = results["attention", part][i]
        print(f"{text!r:38} -> {got}  ({'ok' if got == target else 'expected ' + target})")

    # The heatmap: a few held-out dates in different formats, and one held-out locale's.
    def first(part: str, form: str) -> tuple[str, int]:
        forms = written[part]["formats"]
        return part, next((i for i, f in enumerate(forms) if f == form), 0)

    picks = [first("test", "full"), first("test", "medium"), first("test", "short")]
    picks.append(first(held_out[0], "long"))
    picked = {name: np.stack([data[part][name][i] for part, i in picks]) for name in data["test"]}
    batch, _ = next(chunks(picked, args.eval_batch))  # the compiled decoding shape
    tokens = attention_model.translate(attention_params, batch, "greedy")
    weights = np.asarray(attention_model.attention_weights(attention_params, batch, tokens))
    plot_attention(
        out / "attention.png",
        weights,
        [written[part]["texts"][i] for part, i in picks],
        [to_text(row) for row in np.asarray(tokens)[: len(picks)]],
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # fit saved a checkpoint and said how to resume
        sys.exit(130)
