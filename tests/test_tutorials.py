"""The tutorials of the documentation site (``docs/tutorials/``): each page's code, run at its
quick setting, and what the page says of it; the pages' snippets and figures exist.

Each page includes its code from ``docs/tutorials/<name>.py`` (pymdownx.snippets blocks,
``--8<--`` / ``docs/tutorials/<name>.py:<section>`` / ``--8<--``: the block form, which ruff's
Markdown formatter leaves alone), so the code tested here is the code the page shows. The
full settings (the numbers and figures on the pages) take minutes and run by hand:
``python docs/tutorials/<name>.py``. The scripts are user code: like the doctests outside
``tests/``, they run with JAX's default rank promotion.
"""

import importlib.util
import re
from pathlib import Path

import jax
import numpy as np
import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "docs" / "tutorials"
NAMES = ("vanishing_gradients", "sentiment", "forecasting", "next_word", "from_scratch")


@pytest.fixture(autouse=True)
def _user_code_rank_promotion(_strict_rank_promotion):
    """``x @ W + b`` with ``b [hidden]`` is how a user writes a dense layer."""
    with jax.numpy_rank_promotion("allow"):
        yield


def load(name):
    spec = importlib.util.spec_from_file_location(f"tutorial_{name}", TUTORIALS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_page_snippets_and_figures_exist(name):
    """Every snippet names a file and a section in it, every section of the script is shown
    somewhere, and every embedded figure exists."""
    page = (TUTORIALS / f"{name}.md").read_text()
    root = TUTORIALS.parent.parent
    blocks = re.findall(r"^--8<--\n(.*?)\n--8<--$", page, flags=re.M | re.S)
    specs = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    included = [tuple(spec.partition(":")[::2]) for spec in specs]
    assert "--8<-- " not in page, "use the block form (ruff format rewrites the inline one)"
    assert included, f"{name}.md includes no code"
    for path, section in included:
        source = (root / path).read_text()
        if section:
            assert f"# --8<-- [start:{section}]" in source, (path, section)
            assert f"# --8<-- [end:{section}]" in source, (path, section)
    script = (TUTORIALS / f"{name}.py").read_text()
    shown = {section for path, section in included if path.endswith(f"{name}.py")}
    assert set(re.findall(r"# --8<-- \[start:([a-z_]+)\]", script)) <= shown
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page):
        assert (TUTORIALS / figure).stat().st_size > 10_000, figure


def test_vanishing_gradients(tmp_path, capsys):
    results = load("vanishing_gradients").main(quick=True, out_dir=tmp_path)
    time_steps = results["time_steps"]
    assert len(results["curves"]) == 10  # five models, before and after training
    for name, curve in results["curves"].items():
        assert curve.shape == (time_steps,), name
        assert np.all(np.isfinite(curve)) and np.all(curve > 0), name
    for name in ("SimpleRNN", "LSTM", "GRU", "LSTM, chrono init", "GRU, chrono init"):
        assert 0 <= results[f"{name} accuracy"] <= 1
    assert results["figure"] == tmp_path / "vanishing_gradients.png"
    assert results["figure"].stat().st_size > 10_000
    assert "test accuracy" in capsys.readouterr().out


def test_sentiment(capsys):
    """On the fixture's six training reviews: the small model fits them, padding changes no
    prediction, dropout is random in training mode and off in evaluation mode."""
    results = load("sentiment").main(quick=True)
    assert results["train_reviews"] == 6
    small = results["Sentiment"]
    assert small["losses"][-1] < small["losses"][0] / 2
    assert small["train_accuracy"] == 1.0
    assert np.isfinite(results["IMDB"]["losses"]).all()
    assert results["padding_difference"] < 1e-6
    assert not results["train_mode_equal"] and results["eval_mode_equal"]
    assert "evaluation mode, two calls equal: True" in capsys.readouterr().out


def test_forecasting(tmp_path):
    results = load("forecasting").main(quick=True, out_dir=tmp_path)
    assert results["test_points"] > 30  # the last 15% of 285 yearly windows
    for kind in ("SimpleRNN", "LSTM", "GRU", "persistence"):
        assert 0 < results[f"{kind}_test_rmse"] < 1000, kind
    assert (tmp_path / "forecasting.png").stat().st_size > 10_000


def test_next_word():
    """The hand-written ``lax.scan`` of ``cell.step`` and ``rnnjax.decode`` pick the same
    greedy words; perplexities are those of distributions over the vocabulary."""
    results = load("next_word").main(quick=True)
    np.testing.assert_array_equal(results["greedy_scan"], results["greedy_decode"])
    vocab_size = 200
    for name in ("lstm", "bigram", "unigram"):
        assert 1 < results[name] < 10 * vocab_size, name
    assert results["bigram"] < results["unigram"]
    assert np.isfinite(results["losses"]).all()
    assert sum(results["top_probabilities"]) <= 1 + 1e-6
    for text in results["texts"].values():
        assert text.startswith("the return value is ") and len(text.split()) == 4 + 12


def test_from_scratch():
    """The from-scratch cell and ``rnnjax.simple_rnn`` agree to float32 rounding, values and
    gradients; lengths and reverse do what the page says."""
    results = load("from_scratch").main(quick=True)
    assert results["losses"][-1] < results["losses"][0] / 2
    assert results["h_difference"] < 1e-5 and results["ys_difference"] < 1e-5
    for name, difference in results["grad_differences"].items():
        assert difference < 1e-5 * max(1.0, results["grad_scale"]), name
    assert results["length_difference"] < 1e-5 and results["padding_outputs_zero"]
    assert results["reverse_difference"] < 1e-5
    shapes = results["shapes"]
    assert results["stack_shape"] == (shapes["batch"], shapes["time"], shapes["hidden"])
