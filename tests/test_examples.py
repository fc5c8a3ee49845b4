"""Each example's ``--quick`` run, as a user would start it (smoke tests: no convergence)."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "aclImdb"


def run(script, *args, timeout=300):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize(
    "script",
    [
        "quickstart.py",
        "forecast.py",
        "word_language.py",
        "char_lm.py",
        "sentiment.py",
        "translate_dates.py",
        "next_word.py",
        "adding_problem.py",
    ],
)
def test_help(script):
    assert "usage:" in run(script, "--help")


def test_adding_problem_quick(tmp_path):
    out = tmp_path / "adding.json"
    stdout = run("adding_problem.py", "--quick", "--cells", "para_gru,lru", "--out", str(out))
    assert "para_gru" in stdout and "lru" in stdout and "test MSE" in stdout
    results = json.loads(out.read_text())["results"]
    assert [r["cell"] for r in results] == ["para_gru", "lru"]
    assert all(r["test_mse"] == r["test_mse"] and r["test_mse"] < 100 for r in results)


def test_quickstart_loss_falls():
    lines = [line for line in run("quickstart.py", "--steps", "100").splitlines() if "loss" in line]
    losses = [float(line.split()[-1]) for line in lines]
    assert losses[-1] < losses[0] / 5


@pytest.mark.parametrize("dataset", ["sunspots", "co2"])
def test_forecast_quick(tmp_path, dataset):
    run("forecast.py", "--quick", "--dataset", dataset, "--out", str(tmp_path), "--no-progress")
    report = json.loads((tmp_path / f"{dataset}-report.json").read_text())
    assert report["target"] == {"sunspots": "level", "co2": "change"}[dataset]
    for kind in ("simple_rnn", "lstm", "gru"):
        assert report[f"{kind}_test_rmse"] > 0
    assert report["persistence_test_rmse"] > 0
    assert report["best_on_validation"] in ("simple_rnn", "lstm", "gru")
    assert (tmp_path / f"{dataset}-forecast.png").stat().st_size > 10_000
    metrics = list(tmp_path.glob(f"{dataset}-lstm-*-metrics.jsonl"))
    assert len(metrics) == 1 and "val_rmse_scaled" in metrics[0].read_text()
    assert any((tmp_path / "checkpoints").iterdir())


def test_word_language_quick(tmp_path):
    run("word_language.py", "--quick", "--out", str(tmp_path), "--no-progress")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["languages"] == ["en", "de", "fr", "es", "it", "nl"]
    assert 0 <= report["test_accuracy"] <= 1 and 0 < report["majority_baseline_accuracy"] < 0.5
    assert (tmp_path / "confusion.png").stat().st_size > 10_000


def test_char_lm_quick(tmp_path):
    stdout = run("char_lm.py", "--quick", "--out", str(tmp_path), "--no-progress")
    report = json.loads((tmp_path / "report.json").read_text())
    assert 0 < report["unigram_bits_per_char"] < 8 and report["val_bits_per_char"] > 0
    sample = stdout.split("--- sample (temperature 0.7) ---\n")[1]
    assert sample.startswith("def ") and len(sample) >= 30


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imdb_loader_reads_the_aclimdb_layout():
    sentiment = load_example("sentiment")
    texts, labels = sentiment.load_imdb(FIXTURE, "train")
    assert len(texts) == 6 and labels.tolist() == [1, 1, 1, 0, 0, 0]
    assert sentiment.tokenize(texts[0]) == [
        "a",
        "wonderful",
        "film",
        "the",
        "acting",
        "was",
        "superb",
        "and",
        "the",
        "story",
        "moving",
    ]  # <br /> is a break, not a word
    vocabulary = sentiment.build_vocabulary(texts, max_features=6)
    assert len(vocabulary) == 4 and vocabulary["the"] == 2  # the most frequent word
    encoded = sentiment.encode(["the acting was great", ""], vocabulary, maxlen=3)
    assert encoded["lengths"].tolist() == [3, 0]
    assert encoded["ids"][0, 0] == 2 and encoded["ids"][1].tolist() == [0, 0, 0]
    with pytest.raises(
        FileNotFoundError, match=r"aclImdb/valid/pos not found: --data-dir \(.*aclImdb\) must be"
    ):
        sentiment.load_imdb(FIXTURE, "valid")


@pytest.mark.parametrize(
    ("made", "named", "state"),
    [
        ((), "test/pos", "not found"),
        (("test/pos", "test/neg"), "test/pos", "holds no reviews"),
        (("test/pos/0_8.txt",), "test/neg", "not found"),
    ],
)
def test_imdb_loader_names_a_folder_without_reviews(tmp_path, made, named, state):
    """Missing, empty or half-filled: the error names the folder and the layout, and ``main``
    stops with it before building a model."""
    data_dir = tmp_path / "aclImdb"
    for path in made:  # a folder, or a review in its folder
        folder = data_dir / (Path(path).parent if path.endswith(".txt") else path)
        folder.mkdir(parents=True, exist_ok=True)
        if path.endswith(".txt"):
            (data_dir / path).write_text("a review")
    sentiment = load_example("sentiment")
    message = (
        rf"{re.escape(str(data_dir / named))} {state}.*--data-dir \({re.escape(str(data_dir))}\)"
    )
    with pytest.raises(FileNotFoundError, match=message + ".*test/pos and test/neg, one review"):
        sentiment.load_imdb(data_dir, "test")
    if not made:
        with pytest.raises(FileNotFoundError, match=r"train/pos not found: --data-dir"):
            sentiment.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "runs")])
        assert not (tmp_path / "runs").exists()


def test_sentiment_without_data_says_where_to_get_it():
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "sentiment.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "aclImdb_v1.tar.gz" in result.stderr and "--data-dir aclImdb" in result.stderr


@pytest.mark.parametrize("model", ["dropout", "small"])
def test_sentiment_quick_on_the_fixture(tmp_path, model):
    run(
        "sentiment.py",
        *("--data-dir", str(FIXTURE), "--model", model, "--quick", "--no-progress"),
        *("--out", str(tmp_path)),
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["train_reviews"] == 6 and report["test_reviews"] == 4
    assert report["majority_baseline_accuracy"] == 0.5 and 0 <= report["test_accuracy"] <= 1


def test_char_lm_truncated_bptt_quick(tmp_path):
    run("char_lm.py", "--quick", "--tbptt", "8", "--out", str(tmp_path), "--no-progress")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["val_bits_per_char"] > 0
    assert list(tmp_path.glob("lstm-*-k8-*-metrics.jsonl"))


def test_char_lm_min_gru_stack_quick(tmp_path):
    stdout = run(
        "char_lm.py",
        *("--quick", "--cell", "min_gru", "--num-layers", "2"),
        *("--out", str(tmp_path), "--no-progress"),
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["cell"] == "min_gru" and report["num_layers"] == 2
    assert report["val_bits_per_char"] > 0 and report["train_seconds"] > 0
    assert list(tmp_path.glob("min_gru-l2-*-metrics.jsonl"))
    sample = stdout.split("--- sample (temperature 0.7) ---\n")[1]
    assert sample.startswith("def ") and len(sample) >= 30
    assert "min_gru x2: validation" in stdout and "bits per character" in stdout


@pytest.mark.parametrize(
    ("kind", "depth"), [("lstm", 1), ("min_gru", 2), ("min_lstm", 3), ("para_lstm", 2), ("lru", 2)]
)
def test_char_lm_decode_step_matches_the_model(kind, depth):
    """Sampling's one-character-at-a-time step equals the trained model over a sequence."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    char_lm = load_example("char_lm")
    cells = [char_lm.CELLS[kind](8) for _ in range(depth)]
    model = char_lm.build_model(cells)
    params = model.init(jax.random.key(0), 5)
    xs = jax.random.normal(jax.random.key(1), (7, 5))
    _, expected = model.apply(params, xs[None])
    layer_params = (params,) if depth == 1 else params
    carries = tuple(cell.initial_carry(p, ()) for cell, p in zip(cells, layer_params, strict=True))
    _, got = jax.lax.scan(lambda c, x: char_lm.decode_step(cells, params, c, x), carries, xs)
    np.testing.assert_allclose(got, expected[0], atol=1e-5)
    assert (jnp.abs(expected) > 0).any()


class Killed(Exception):
    """Stands in for a kill: raised when the trainer asks for a given batch."""


KILL_CASES = {  # the trainer's --quick run, and the steps to kill it at, one run each
    # forecast.py: checkpoints every 10 of 30 steps; the best validation score is at step
    # 20 (this learning rate), so the kill at 25 tests that the resumed run keeps it.
    "forecast": (["--cells", "gru", "--learning-rate", "0.03"], "sunspots-report.json", (15, 25)),
    "char_lm": ([], "report.json", (7,)),  # one checkpoint, at the end: a resume from scratch
    "word_language": ([], "report.json", (7,)),
    "sentiment": (["--data-dir", str(FIXTURE)], "report.json", (4,)),
}


@pytest.mark.parametrize("name", KILL_CASES)
def test_killed_and_resumed_trainer_reports_what_an_uninterrupted_run_does(
    tmp_path, monkeypatch, name
):
    """A trainer killed (in-process: an exception where it asks for a batch) and run again
    reports the same numbers and writes the same metrics rows as an uninterrupted run."""
    flags, report_name, kill_at = KILL_CASES[name]
    example = load_example(name)
    fit = example.training.fit

    def run_main(out, kill_at=None):
        def killable_fit(trainer, state, get_batch, *args, **kwargs):
            def batch(step):
                if step == kill_at:
                    raise Killed
                return get_batch(step)

            return fit(trainer, state, batch, *args, **kwargs)

        monkeypatch.setattr(example.training, "fit", killable_fit)
        argv = [f"{name}.py", "--quick", *flags, "--out", str(out), "--no-progress"]
        monkeypatch.setattr(sys, "argv", argv)
        with jax.numpy_rank_promotion("allow"):  # as when run as a script
            example.main()

    def results(out):
        report = json.loads((out / report_name).read_text())
        report = {k: v for k, v in report.items() if "seconds" not in k}
        rows = [
            {k: v for k, v in json.loads(line).items() if k != "seconds"}
            for metrics in sorted(out.glob("*-metrics.jsonl"))
            for line in metrics.read_text().splitlines()
        ]
        return report, rows

    run_main(tmp_path / "whole")
    if name == "forecast":
        rows = results(tmp_path / "whole")[1]
        scores = [row["val_rmse_scaled"] for row in rows if "val_rmse_scaled" in row]
        assert min(scores) < scores[-1]  # the best is not the last: a resume must keep it
    for step in kill_at:
        with pytest.raises(Killed):
            run_main(tmp_path / "killed", kill_at=step)
    run_main(tmp_path / "killed")
    assert results(tmp_path / "killed") == results(tmp_path / "whole")


def test_translate_dates_quick(tmp_path):
    stdout = run("translate_dates.py", "--quick", "--out", str(tmp_path), "--no-progress")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["held_out_locales"] == ["pt_PT", "da", "pl", "ru"]
    for name in ("attention", "baseline"):
        for part in ("test", "pt_PT", "da", "pl", "ru"):
            assert 0 <= report[f"{name}_{part}_exact_match"] <= 1
        assert f"{name}: held-out dates" in stdout
        metrics = list(tmp_path.glob(f"{name}-*-metrics.jsonl"))
        assert len(metrics) == 1 and "val_exact_match" in metrics[0].read_text()
    assert 0 <= report["attention_beam_test_exact_match"] <= 1
    assert report["ambiguous_left_out"] > 0  # en_US "3/12/24" is es "3/12/24" too
    assert (tmp_path / "attention.png").stat().st_size > 10_000
    assert any((tmp_path / "checkpoints").iterdir())


def test_translate_dates_targets_are_the_dates_written():
    """Each ISO target, read back with the standard library and written by Babel in the
    example's locale and format, gives the source text; text two dates share is left out."""
    import datetime

    from babel.dates import format_date

    translate = load_example("translate_dates")
    dates = [datetime.date(2024, 3, 12), datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)]
    locales, forms = ["en_US", "fr", "de", "es", "pt_PT"], translate.FORMATS
    reader = translate.NumericReader(locales)
    pairs = [(d, loc, f) for d in dates for loc in locales for f in forms]
    written = translate.write_dates(*zip(*pairs, strict=True), reader)
    for text, target, locale, form in zip(
        written["texts"], written["targets"], written["locales"], written["formats"], strict=True
    ):
        date = datetime.date.fromisoformat(target)
        assert format_date(date, format=form, locale=locale) == text
    # en_US "3/12/24" (12 March) is es "3/12/24" (3 December), es "12/3/24" (12 March) is
    # en_US "12/3/24" (3 December): both are left out, nothing else.
    assert written["ambiguous"] == 2 and len(written["texts"]) == len(pairs) - 2
    assert "3/12/24" not in written["texts"] and "12/3/24" not in written["texts"]
    assert reader.readings("3/12/24") == {datetime.date(2024, 3, 12), datetime.date(2024, 12, 3)}
    alphabet = {char: i + 2 for i, char in enumerate("0123456789 marsdéc")}
    encoded = translate.encode(written, alphabet, source_length=48)
    assert [translate.to_text(row) for row in encoded["targets"]] == written["targets"]
    assert (encoded["decoder_inputs"][:, 1:] == encoded["targets"][:, :-1]).all()
    assert encoded["lengths"].tolist() == [len(text) for text in written["texts"]]


def test_next_word_quick(tmp_path):
    prompt = "the return statement"
    stdout = run("next_word.py", "--quick", "--out", str(tmp_path), "--no-progress")
    report = json.loads((tmp_path / "report.json").read_text())
    for name in ("test_perplexity", "unigram_test_perplexity", "bigram_test_perplexity"):
        assert 1 < report[name] < report["vocabulary"]
    assert "test perplexity: LSTM" in stdout and "bigram" in stdout and "unigram" in stdout
    metrics = list(tmp_path.glob("lstm-*-metrics.jsonl"))
    assert len(metrics) == 1 and "val_perplexity" in metrics[0].read_text()
    for title in ("greedy", "sample (temperature 0.8, top-k 20)", "beam search (width 2)"):
        continuation = stdout.split(f"--- {title} ---\n")[1].splitlines()[0]
        assert continuation.startswith(prompt) and len(continuation) > len(prompt)


def test_next_word_tokens_vocabulary_and_baselines():
    """The tokenizer round-trips through the vocabulary, the topic split is a partition, and
    the bigram baseline's perplexity is the one computed by hand on a tiny corpus."""
    import math

    import numpy as np

    next_word = load_example("next_word")
    tokens = next_word.tokenize("A *list* of x**2:\n---------\n\n  f(x) ... done.")
    expected = "a * list * of x ** 2 : f ( x ) ... done ."
    assert tokens == expected.split()
    vocabulary = next_word.build_vocabulary(tokens, size=4)
    assert vocabulary == ["<unk>", "*", "x", "a"]  # by count, then first seen
    ids = next_word.encode(tokens, vocabulary)
    assert [vocabulary[i] for i in ids] == [t if t in vocabulary else "<unk>" for t in tokens]
    full = next_word.build_vocabulary(tokens, size=100)
    assert [full[i] for i in next_word.encode(tokens, full)] == tokens
    words = ["a", "list", "(", "of", "x", ")", "is", "done", "."]
    assert next_word.detokenize(words) == "a list (of x) is done."

    sizes = {"a": 50, "b": 30, "c": 10, "d": 10}
    parts = next_word.split_topics(sizes, seed=0, held_out=0.1)
    assert sorted(name for names in parts.values() for name in names) == sorted(sizes)
    assert all(parts.values())

    # Train ids 1 2 1 2 2 over a vocabulary of 4: unigram add-one (1, 3, 4, 1) / 9; contexts
    # c(1) = 2, c(2) = 2; pairs (1, 2): 2, (2, 1): 1, (2, 2): 1. With lambda 0.5:
    # P(2 | 1) = 0.5 * 2/2 + 0.5 * 4/9, P(1 | 2) = 0.5 * 1/2 + 0.5 * 3/9, and context 3
    # (never seen) falls back to the unigram: P(0 | 3) = 1/9.
    train = np.array([1, 2, 1, 2, 2])
    got = next_word.bigram_log_probs(train, np.array([1, 2, 3]), np.array([2, 1, 0]), 4, 0.5)
    expected = [0.5 + 0.5 * 4 / 9, 0.25 + 0.5 * 3 / 9, 1 / 9]
    np.testing.assert_allclose(np.exp(got), expected)
    assert math.isclose(
        next_word.perplexity(got), math.exp(-sum(map(math.log, expected)) / 3), rel_tol=1e-12
    )
