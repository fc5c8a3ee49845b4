"""The tutorials of the documentation site (``docs/tutorials/``) run top to bottom, as a reader
runs them.

Each page's ```python blocks, concatenated in order, are run as one script in a fresh
interpreter, in an empty folder, with ``RNNJAX_QUICK=1`` (the small setting that each page
mentions). The script must print the lines of the page's ```text blocks, in order, with other
numbers (the quick setting's), and write the figures the page shows. A page's blocks include
their code from ``docs/tutorials/<name>.py`` (pymdownx.snippets, block form:
``--8<--`` / ``docs/tutorials/<name>.py:<section>`` / ``--8<--``), and that file holds exactly
the page's code, so ``python docs/tutorials/<name>.py`` is the page (and, run in
``docs/tutorials/figures``, redraws its figures at the full setting, which takes minutes).
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "docs" / "tutorials"
NAMES = ("vanishing_gradients", "sentiment", "forecasting", "next_word", "from_scratch")
SNIPPET = re.compile(r"^--8<--\n(.*?)\n--8<--$", re.M | re.S)
NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?"

# Printed lines whose rest, after this label, is generated text: only the label is checked.
FREE_TEXT = {"next_word": ("next word:", "greedy (scan):", "greedy ", "sample ", "beam ")}


def section(path: str, name: str) -> str:
    """Lines between ``# --8<-- [start:name]`` and ``# --8<-- [end:name]``, as snippets does."""
    source = (ROOT / path).read_text()
    match = re.search(
        rf"^# --8<-- \[start:{name}\]\n(.*?)^# --8<-- \[end:{name}\]$", source, re.M | re.S
    )
    assert match, f"{path} has no section {name!r}"
    return match.group(1)


def page_code(name: str) -> str:
    """The page's python blocks, snippets expanded, concatenated in order."""
    blocks = re.findall(
        r"^```python\n(.*?)^```", (TUTORIALS / f"{name}.md").read_text(), re.M | re.S
    )
    code = []
    for block in blocks:
        for snippet in SNIPPET.findall(block) or [None]:
            if snippet is None:
                code.append(block)
                continue
            for line in filter(None, map(str.strip, snippet.splitlines())):
                path, _, part = line.partition(":")
                code.append(section(path, part) if part else (ROOT / path).read_text())
    return "\n".join(code)


def page_output(name: str) -> list[str]:
    text = (TUTORIALS / f"{name}.md").read_text()
    return [
        line
        for block in re.findall(r"^```text\n(.*?)^```", text, re.M | re.S)
        for line in block.splitlines()
        if line.strip()
    ]


def line_pattern(line: str, free_text: tuple[str, ...]) -> re.Pattern[str]:
    """The page's output line with every number a wildcard (or, for generated text, its label)."""
    for label in free_text:
        if line.startswith(label):
            return re.compile(re.escape(label) + ".*")
    parts = re.split(NUMBER, line.strip())
    return re.compile(NUMBER.join(re.escape(part) for part in parts))


def test_line_pattern_ignores_numbers_and_keeps_words():
    pattern = line_pattern("loss 0.3675 -> 1e-04 after 500 steps: True (64, 20)", ())
    assert pattern.fullmatch("loss 0.19 -> 0.0168 after 20 steps: True (16, 10)")
    assert not pattern.fullmatch("loss 0.19 -> 0.0168 after 20 steps: False (16, 10)")
    assert line_pattern("greedy (scan): the end", ("greedy",)).fullmatch("greedy (scan): a b c")


@pytest.mark.parametrize("name", NAMES)
def test_the_script_is_the_page(name):
    """``docs/tutorials/<name>.py`` holds the page's code and nothing else (its docstring
    aside), every import and setting included: the same statements in the same order."""
    script = ast.parse((TUTORIALS / f"{name}.py").read_text())
    assert ast.get_docstring(script), name
    script.body = script.body[1:]
    page = page_code(name)
    assert "def main(" not in page, "no hidden or indented body: the page runs as it reads"
    assert (
        "RNNJAX_QUICK" in page and (TUTORIALS / f"{name}.md").read_text().count("RNNJAX_QUICK") == 1
    )
    assert ast.dump(ast.parse(page)) == ast.dump(script)


def extra_checks(name: str, output: str) -> None:
    """What the quick setting can still show beyond the page's words."""
    if name == "from_scratch":
        first, last = map(float, re.search(rf"loss ({NUMBER}) -> ({NUMBER})", output).groups())
        assert last < first / 2
    if name == "sentiment":  # the small model fits its six reviews; padding changes nothing
        assert re.search(r"Sentiment: 6 training reviews, .* accuracy: train 1\.00", output)
        assert float(re.search(rf"at most ({NUMBER})", output).group(1)) < 1e-6
    if name == "forecasting":  # errors in sunspot numbers, for the three cells and persistence
        errors = [float(e) for e in re.findall(rf"test RMSE ({NUMBER})", output)]
        assert len(errors) == 4 and all(0 < e < 1000 for e in errors), errors
    if name == "next_word":
        lstm, bigram, unigram = map(
            float,
            re.search(rf"LSTM ({NUMBER}), bigram ({NUMBER}), unigram ({NUMBER})", output).groups(),
        )
        assert 1 < bigram < unigram and 1 < lstm < 2000


def run_page(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` as one script in ``folder``, with the quick setting, as a reader would."""
    env = {**os.environ, "RNNJAX_QUICK": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    (folder / "page.py").write_text(code)
    return subprocess.run(
        [sys.executable, "page.py"], cwd=folder, env=env, capture_output=True, text=True
    )


def sentiment_loader():
    namespace: dict = {}
    exec(section("docs/tutorials/sentiment.py", "settings"), namespace)
    exec(section("docs/tutorials/sentiment.py", "data"), namespace)
    return namespace["load_reviews"]


@pytest.mark.parametrize(
    ("made", "named", "state"),
    [
        ((), "train/pos", "not found"),
        (("train/pos/", "train/neg/"), "train/pos", "holds no reviews"),
        (("train/pos/0_8.txt",), "train/neg", "not found"),
    ],
)
def test_the_sentiment_loader_names_a_folder_without_reviews(tmp_path, made, named, state):
    """A missing aclImdb folder, an empty one, or one with a split half-filled: the error names
    the first folder without reviews and the layout it must have."""
    data_dir = tmp_path / "aclImdb"
    for path in made:  # a folder, or a review in its folder
        folder = data_dir / (Path(path).parent if path.endswith(".txt") else path)
        folder.mkdir(parents=True, exist_ok=True)
        if path.endswith(".txt"):
            (data_dir / path).write_text("a review")
    folder = re.escape(str(data_dir / named))
    with pytest.raises(FileNotFoundError, match=rf"{folder} {state}.*test/pos and test/neg"):
        sentiment_loader()(data_dir, "train")


def test_the_sentiment_page_stops_at_once_without_its_data(tmp_path):
    """With ``DATA_DIR`` on a folder that is not there, the page stops before any training
    (nothing printed), with an error that names the folder."""
    code = page_code("sentiment")
    default = re.search(r"^DATA_DIR = .*$", code, re.M)
    assert default, "the page sets DATA_DIR at the top"
    missing = tmp_path / "aclImdb"
    code = code.replace(default.group(0), f"DATA_DIR = Path({str(missing)!r})")
    result = run_page(code, tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert f"FileNotFoundError: {missing / 'train' / 'pos'} not found" in result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_the_page_runs_top_to_bottom_and_prints_what_it_shows(name, tmp_path):
    result = run_page(page_code(name), tmp_path)  # in an empty folder: data found from rnnjax
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line.strip() for line in result.stdout.splitlines()]
    position = 0
    for line in page_output(name):  # in order, each once
        pattern = line_pattern(line, FREE_TEXT.get(name, ()))
        found = [i for i in range(position, len(printed)) if pattern.fullmatch(printed[i])]
        assert found, f"{name}.md shows {line!r}; the script printed:\n{result.stdout}"
        position = found[0] + 1
    extra_checks(name, result.stdout)
    figures = re.findall(
        r"!\[[^\]]*\]\(figures/([^)]+\.png)\)", (TUTORIALS / f"{name}.md").read_text()
    )
    assert figures, f"{name}.md ends without a figure"
    for figure in figures:
        assert (TUTORIALS / "figures" / figure).stat().st_size > 10_000, figure
        assert (tmp_path / figure).stat().st_size > 10_000, f"the script did not write {figure}"
