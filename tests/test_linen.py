"""rnnjax.linen: each module equals the functional call on its params, bit for bit on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import rnnjax
import rnnjax.linen
from tests.peers import import_peer
from tests.test_nnx import LENGTHS, assert_equal, bce, inputs, keras_structure, parity_data

HIDDEN = 5

CASES = [
    (rnnjax.linen.SimpleRNN(HIDDEN, activation=jax.nn.relu),
     rnnjax.simple_rnn(HIDDEN, jax.nn.relu), {}),
    (rnnjax.linen.LSTM(HIDDEN, return_sequences=True, go_backwards=True),
     rnnjax.lstm(HIDDEN), {"return_sequences": True, "go_backwards": True}),
    (rnnjax.linen.GRU(HIDDEN, reset_after=False, return_state=True, dropout=0.3,
                      recurrent_dropout=0.4, unroll=2, hoist_projection=True),
     rnnjax.gru(HIDDEN, reset_after=False),
     {"return_state": True, "dropout": 0.3, "recurrent_dropout": 0.4, "unroll": 2,
      "hoist_projection": True}),
]  # fmt: skip


@pytest.mark.parametrize(("module", "cell", "options"), CASES, ids=["simple", "lstm", "gru"])
def test_module_equals_functional(module, cell, options):
    xs, key = inputs(), jax.random.key(7)
    variables = module.init(jax.random.key(0), xs, deterministic=True)
    params = variables["params"]["cell"]
    assert type(params) is type(cell.init(jax.random.key(0), 4))
    training = False  # linen derives its own key from the 'dropout' rng: see the next test
    for lengths in (None, LENGTHS):
        got = module.apply(variables, xs, seq_lengths=lengths, deterministic=not training,
                           rngs={"dropout": key})  # fmt: skip
        layer_keys = (
            "dropout",
            "recurrent_dropout",
            "unroll",
            "hoist_projection",
        )
        layer_options = {k: v for k, v in options.items() if k in layer_keys}
        layer = rnnjax.layer(cell, reverse=options.get("go_backwards", False), **layer_options)
        final, ys = layer.apply(params, xs, seq_lengths=lengths, key=key,
                                deterministic=not training)  # fmt: skip
        structure = {k: options.get(k, False)
                     for k in ("return_sequences", "return_state", "go_backwards")}  # fmt: skip
        assert_equal(got, keras_structure(final, ys, lengths, **structure))


def test_forward_mode_equals_plain_autodiff_and_fused_backward_is_gone():
    xs = inputs()
    module = rnnjax.linen.GRU(HIDDEN, return_sequences=True)
    variables = module.init(jax.random.key(0), xs)
    plain = rnnjax.layer(rnnjax.gru(HIDDEN)._replace(gate_split=None))
    params = variables["params"]["cell"]
    got = jax.jvp(lambda x: module.apply(variables, x, seq_lengths=LENGTHS), (xs,), (xs**2,))
    want = jax.jvp(lambda x: plain.apply(params, x, seq_lengths=LENGTHS)[1], (xs,), (xs**2,))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="fused_backward"):
        rnnjax.linen.GRU(HIDDEN, fused_backward=True)


def test_dropout_rng_and_deterministic():
    module = rnnjax.linen.LSTM(HIDDEN, dropout=0.5, recurrent_dropout=0.5)
    xs = inputs()
    variables = module.init(jax.random.key(0), xs, deterministic=True)
    clean = module.apply(variables, xs, deterministic=True)
    noisy = module.apply(variables, xs, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(clean, noisy)
    with pytest.raises(Exception, match="dropout"):
        module.apply(variables, xs, deterministic=False)  # no 'dropout' rng
    fixed = rnnjax.linen.LSTM(HIDDEN, dropout=0.5, deterministic=True)
    assert_equal(fixed.apply(variables, xs), clean)


def test_jit_grad_vmap_and_variables_round_trip():
    module = rnnjax.linen.GRU(HIDDEN, return_sequences=True, num_layers=2)
    xs = inputs()
    variables = module.init(jax.random.key(0), xs)
    assert isinstance(variables["params"]["cell"], tuple)
    assert_equal(jax.jit(module.apply)(variables, xs), module.apply(variables, xs))
    layer = rnnjax.layer(rnnjax.gru(HIDDEN))
    net = rnnjax.stack(layer, layer)
    params = variables["params"]["cell"]
    want = jax.grad(lambda p: jnp.sum(net.apply(p, xs)[1] ** 2))(params)
    got = jax.grad(lambda v: jnp.sum(module.apply(v, xs) ** 2))(variables)
    assert_equal(got["params"]["cell"], want)
    many = inputs(1, (2, 3, 6, 4))
    np.testing.assert_allclose(
        jax.vmap(lambda x: module.apply(variables, x))(many), module.apply(variables, many),
        rtol=1e-6, atol=1e-6,
    )  # fmt: skip
    rebuilt = rnnjax.linen.variables_from(params)
    assert_equal(module.apply(rebuilt, xs), module.apply(variables, xs))


def test_bidirectional_and_keras_weights():
    keras = import_peer("keras")
    with jax.numpy_rank_promotion("allow"):  # Keras's own code broadcasts ranks
        check_bidirectional(keras)


def check_bidirectional(keras):
    layer = keras.layers.Bidirectional(keras.layers.GRU(HIDDEN, return_sequences=True),
                                       merge_mode="sum")  # fmt: skip
    xs = np.asarray(inputs())
    _ = layer(xs)
    apply, params = rnnjax.interop.from_keras(layer)
    module = rnnjax.linen.Bidirectional(rnnjax.linen.GRU(HIDDEN, return_sequences=True),
                                        merge="sum")  # fmt: skip
    variables = module.init(jax.random.key(0), xs)
    assert set(variables["params"]) == {"forward", "backward"}
    params = rnnjax.BidirectionalParams(*params)
    ours = module.apply(rnnjax.linen.variables_from(params), xs)
    np.testing.assert_allclose(ours, apply(params, xs), rtol=1e-5, atol=1e-5)
    _, ys = rnnjax.bidirectional(rnnjax.layer(rnnjax.gru(HIDDEN)), merge="sum").apply(
        rnnjax.BidirectionalParams(*params), xs, seq_lengths=LENGTHS
    )
    assert_equal(module.apply(rnnjax.linen.variables_from(params), xs, seq_lengths=LENGTHS), ys)


class Sentiment(nn.Module):
    """Embedding(10000, 16) -> LSTM(32) -> Dense(64, relu) -> Dense(1, sigmoid)."""

    @nn.compact
    def __call__(self, tokens):
        h = rnnjax.linen.LSTM(32)(nn.Embed(10000, 16)(tokens))
        return nn.sigmoid(nn.Dense(1)(nn.relu(nn.Dense(64)(h))))[..., 0]


class IMDB(nn.Module):
    """Embedding(20000, 128) -> LSTM(128, dropout=0.2, recurrent_dropout=0.2) -> Dense(1)."""

    @nn.compact
    def __call__(self, tokens, *, deterministic: bool):
        lstm = rnnjax.linen.LSTM(128, dropout=0.2, recurrent_dropout=0.2)
        h = lstm(nn.Embed(20000, 128)(tokens), deterministic=deterministic)
        return nn.sigmoid(nn.Dense(1)(h))[..., 0]


def test_sentiment_seed_model_learns_parity():
    tokens, labels = parity_data()
    model = Sentiment()
    params = model.init(jax.random.key(0), tokens[:1])
    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.grad(lambda p: bce(model.apply(p, tokens[:200]), labels[:200]))(params)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(params, updates), state

    for _ in range(300):
        params, state = step(params, state)
    accuracy = float(jnp.mean((model.apply(params, tokens[200:]) > 0.5) == (labels[200:] > 0.5)))
    assert accuracy >= 0.9, accuracy


def test_imdb_seed_model_modes():
    model = IMDB()
    tokens = jnp.arange(12).reshape(2, 6)
    variables = model.init(jax.random.key(0), tokens, deterministic=True)
    train = model.apply(variables, tokens, deterministic=False, rngs={"dropout": jax.random.key(1)})
    evaluation = model.apply(variables, tokens, deterministic=True)
    assert train.shape == evaluation.shape == (2,)
    assert not np.allclose(train, evaluation)
