"""The README's quickstart runs as written, and the loss it trains falls."""

import re
from pathlib import Path

import jax.numpy as jnp

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quickstart_runs_and_learns():
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    first = namespace["loss_fn"](
        namespace["params"], namespace["xs"], namespace["lengths"], namespace["targets"]
    )
    params, opt_state = namespace["params"], namespace["opt_state"]
    for _ in range(30):
        params, opt_state, loss = namespace["train_step"](params, opt_state)
    assert jnp.isfinite(loss) and loss < first
