"""The README's code runs as written, and the quickstart's loss falls."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def run_block(code):
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def test_readme_quickstart_runs_and_learns():
    namespace = run_block(BLOCKS[0])
    first = namespace["loss_fn"](
        namespace["params"], namespace["xs"], namespace["lengths"], namespace["targets"]
    )
    params, opt_state = namespace["params"], namespace["opt_state"]
    for _ in range(30):
        params, opt_state, loss = namespace["train_step"](params, opt_state)
    assert jnp.isfinite(loss) and loss < first


def test_readme_interop_example_gives_what_it_says():
    (block,) = [code for code in BLOCKS if "from_torch" in code]
    namespace = run_block(block)
    ys, h_n, c_n = namespace["ys"], namespace["h_n"], namespace["c_n"]
    assert ys.shape == (4, 10, 64) and h_n.shape == c_n.shape == (4, 4, 32)
    assert not ys[1, 3:].any() and ys[1, :3].all()  # zeros past the length 3


def test_readme_layers_example_gives_what_it_says():
    (block,) = [code for code in BLOCKS if "rnnjax.stack(" in code and "indrnn" not in code]
    namespace = run_block(block)  # the block asserts the output shape itself
    bidir_carry, gru_carry = namespace["bidir_carry"], namespace["gru_carry"]
    assert bidir_carry[0].h.shape == bidir_carry[1].c.shape == (8, 64) and gru_carry.shape == (
        8,
        64,
    )
    assert not namespace["ys"][0, 1:].any()  # the first sequence has length 1


def test_readme_own_cell_runs_through_the_layers():
    (block,) = [code for code in BLOCKS if "indrnn = rnnjax.Cell(" in code]
    with jax.numpy_rank_promotion("allow"):  # user code, which may broadcast as NumPy does
        namespace = run_block(block)  # the block asserts the output shape itself
    ys = namespace["ys"]
    assert not ys[3].any() and not ys[1, 5:].any()  # lengths 0 and 5: zeros past them


def test_readme_seed_models_build_and_train():
    (block,) = [code for code in BLOCKS if "class Forecaster" in code]
    namespace = run_block(block)
    nnx, jnp = namespace["nnx"], namespace["jax"].numpy
    tokens, lengths = jnp.ones((2, 7), jnp.int32), jnp.array([7, 3])
    assert namespace["Sentiment"](nnx.Rngs(0))(tokens, seq_lengths=lengths).shape == (2,)
    imdb = namespace["IMDB"](nnx.Rngs(1))
    imdb.eval()
    assert imdb(tokens, seq_lengths=lengths).shape == (2,)
    windows = jnp.sin(jnp.arange(40.0)).reshape(4, 10, 1)
    targets = windows[:, -1] * 0.5
    model, optimizer = namespace["model"], namespace["optimizer"]
    losses = [float(namespace["train_step"](model, optimizer, windows, targets)) for _ in range(20)]
    assert losses[-1] < losses[0]


def test_readme_linen_seed_model_runs():
    (block,) = [code for code in BLOCKS if "rnnjax.linen.LSTM(32)" in code]
    namespace = run_block(block)
    import jax

    model = namespace["Sentiment"]()
    tokens = jax.numpy.ones((2, 5), jax.numpy.int32)
    variables = model.init(jax.random.key(0), tokens)
    assert variables["params"]["LSTM_0"]["cell"].kernel.shape == (16, 128)
    assert model.apply(variables, tokens).shape == (2,)
