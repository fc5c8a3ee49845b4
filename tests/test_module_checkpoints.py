"""Checkpoints saved by the modules before their rewrite (rnnjax 0.1: ``RecurrentOptions``,
one class per kind) restore into today's modules: the parameter paths are unchanged.

The fixtures (``tests/fixtures/checkpoints_0.1``, made by the script in its README) are orbax
checkpoints of ``nnx.state(module)`` and of linen variables; ``arrays.npz`` holds every saved
leaf by key path, so what is restored is compared with what was saved, and the restored
module is run against the functional call on its params.
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import rnnjax
import rnnjax.linen
import rnnjax.nnx

ROOT = pathlib.Path(__file__).parent / "fixtures" / "checkpoints_0.1"
SAVED = np.load(ROOT / "arrays.npz")
XS = jnp.linspace(-1, 1, 30).reshape(2, 5, 3)
exact = functools.partial(np.testing.assert_allclose, rtol=0, atol=0)


def restore(name, like):
    restored = ocp.StandardCheckpointer().restore(ROOT / name, like)
    leaves = jax.tree_util.tree_leaves_with_path(restored)
    assert len(leaves) == sum(key.startswith(name + "[") for key in SAVED.files)
    for path, leaf in leaves:
        exact(leaf, SAVED[name + jax.tree_util.keystr(path)])
    return restored


@pytest.mark.parametrize(
    ("name", "make", "cell"),
    [
        ("nnx_lstm", lambda: rnnjax.nnx.LSTM(3, 4, rngs=nnx.Rngs(9)), rnnjax.lstm(4)),
        (
            "nnx_gru_2layers",
            lambda: rnnjax.nnx.GRU(3, 4, num_layers=2, rngs=nnx.Rngs(9)),
            None,
        ),
        ("nnx_lstm_cell", lambda: rnnjax.nnx.LSTMCell(3, 4, rngs=nnx.Rngs(9)), rnnjax.lstm(4)),
    ],
)
def test_nnx_checkpoints_restore(name, make, cell):
    graphdef, abstract = nnx.split(nnx.eval_shape(make))
    module = nnx.merge(graphdef, restore(name, abstract))
    if name == "nnx_gru_2layers":
        layer = rnnjax.layer(rnnjax.gru(4))
        _, ys = rnnjax.stack(layer, layer).apply(module.params, XS)
        exact(module(XS), ys[:, -1])
    elif name == "nnx_lstm_cell":
        carry = module.initialize_carry((2, 3))
        exact(module(carry, XS[:, 0])[1], cell.step(module.params, carry, XS[:, 0])[1])
    else:
        exact(module(XS), rnnjax.rnn(cell, module.params, XS)[1][:, -1])


def test_linen_checkpoints_restore():
    lstm = rnnjax.linen.LSTM(4)
    variables = restore("linen_lstm", jax.eval_shape(lstm.init, jax.random.key(0), XS))
    want = rnnjax.rnn(rnnjax.lstm(4), variables["params"]["cell"], XS)[1][:, -1]
    exact(lstm.apply(variables, XS), want)

    bi = rnnjax.linen.Bidirectional(rnnjax.linen.GRU(4))
    like = jax.eval_shape(bi.init, jax.random.key(0), XS)
    variables = restore("linen_bidirectional_gru", like)
    params = variables["params"]
    layer = rnnjax.layer(rnnjax.gru(4))
    both = rnnjax.BidirectionalParams(params["forward"], params["backward"])
    (forward, backward), _ = rnnjax.bidirectional(layer).apply(both, XS)
    exact(bi.apply(variables, XS), jnp.concatenate([forward, backward], axis=-1))
