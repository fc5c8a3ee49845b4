"""The README's code runs as written, and the quickstart's loss falls.

The README keeps the quickstart only; the guides' code moved to docs/ with the rest of the
text and runs in tests/test_docs.py.
"""

import re
from pathlib import Path

import jax.numpy as jnp

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def run_block(code):
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def test_readme_has_only_the_quickstart_to_run():
    assert len(BLOCKS) == 1 and "rnnjax.rnn(cell" in BLOCKS[0]


def test_readme_quickstart_runs_and_learns():
    namespace = run_block(BLOCKS[0])
    first = namespace["loss_fn"](
        namespace["params"], namespace["xs"], namespace["lengths"], namespace["targets"]
    )
    params, opt_state = namespace["params"], namespace["opt_state"]
    for _ in range(30):
        params, opt_state, loss = namespace["train_step"](params, opt_state)
    assert jnp.isfinite(loss) and loss < first


def test_readme_links_into_the_docs_resolve():
    root = README.parent
    targets = re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", README.read_text())
    assert len(targets) >= 20  # the table of contents
    missing = [target for target in targets if not (root / target).is_file()]
    assert not missing
