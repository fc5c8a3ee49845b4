"""Each example's ``--quick`` run, as a user would start it (smoke tests: no convergence)."""

import importlib.util
import json
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
    "script", ["quickstart.py", "forecast.py", "word_language.py", "char_lm.py", "sentiment.py"]
)
def test_help(script):
    assert "usage:" in run(script, "--help")


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
    with pytest.raises(FileNotFoundError, match=r"aclImdb/valid/pos not found: --data-dir must be"):
        sentiment.load_imdb(FIXTURE, "valid")


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


@pytest.mark.parametrize(("kind", "depth"), [("lstm", 1), ("min_gru", 2), ("min_lstm", 3)])
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
