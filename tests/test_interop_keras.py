"""``rnnjax.interop.from_keras`` / ``to_keras`` against live Keras 3 layers (JAX backend)."""

import itertools

import jax
import numpy as np
import pytest

import rnnjax
import rnnjax.interop
from tests.peers import import_peer

BATCH, TIME, INPUT, UNITS = 3, 5, 4, 6
ATOL = 2e-5
KINDS = {
    "simple_rnn-tanh": ("SimpleRNN", {}),
    "simple_rnn-relu": ("SimpleRNN", {"activation": "relu"}),
    "lstm": ("LSTM", {}),
    "gru-reset_after": ("GRU", {}),
    "gru-reset_before": ("GRU", {"reset_after": False}),
}


@pytest.fixture(scope="module")
def keras():
    keras = import_peer("keras")
    assert keras.backend.backend() == "jax"
    return keras


@pytest.fixture(autouse=True)
def _keras_friendly_config():
    """Keras itself broadcasts ranks implicitly (its orthogonal initialiser), so this module
    allows it; float32 parity also needs full-precision matmuls on every backend."""
    with jax.numpy_rank_promotion("allow"), jax.default_matmul_precision("highest"):
        yield


def xs(seed=0):
    return np.random.default_rng(seed).normal(size=(BATCH, TIME, INPUT)).astype(np.float32)


def randomise(layer, seed=1):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:  # nonzero biases, nothing at its default
        variable.assign(rng.uniform(-0.5, 0.5, tuple(variable.shape)).astype(np.float32))
    return layer


def make_layer(keras, kind, bidirectional=None, seed=1, **options):
    class_name, extra = KINDS[kind]
    layer = getattr(keras.layers, class_name)(UNITS, **extra, **options)
    if bidirectional is not None:
        layer = keras.layers.Bidirectional(layer, **bidirectional)
    layer(xs())  # build
    return randomise(layer, seed)


def assert_same_structure_and_close(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("return_sequences", "return_state", "go_backwards"),
    list(itertools.product([False, True], repeat=3)),
)
def test_from_keras_matches_layer(keras, kind, return_sequences, return_state, go_backwards):
    layer = make_layer(
        keras,
        kind,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
    )
    apply, params = rnnjax.interop.from_keras(layer)
    assert_same_structure_and_close(apply(params, xs(2)), layer(xs(2)))


BIDIRECTIONAL_CASES = [
    (kind, merge_mode, return_sequences, return_state)
    for kind in ("lstm", "gru-reset_after")
    for merge_mode in ("concat", "sum", "ave", "mul", None)
    for return_sequences, return_state in itertools.product([False, True], repeat=2)
] + [(kind, "concat", True, True) for kind in ("simple_rnn-tanh", "gru-reset_before")]


@pytest.mark.parametrize(
    ("kind", "merge_mode", "return_sequences", "return_state"), BIDIRECTIONAL_CASES
)
def test_from_keras_bidirectional(keras, kind, merge_mode, return_sequences, return_state):
    layer = make_layer(
        keras,
        kind,
        bidirectional={"merge_mode": merge_mode},
        return_sequences=return_sequences,
        return_state=return_state,
    )
    apply, params = rnnjax.interop.from_keras(layer)
    assert isinstance(params, tuple) and len(params) == 2
    assert_same_structure_and_close(apply(params, xs(2)), layer(xs(2)))


@pytest.mark.parametrize("kind", KINDS)
def test_initial_state(keras, kind):
    layer = make_layer(keras, kind, bidirectional={}, return_sequences=True)
    states = 4 if kind == "lstm" else 2
    rng = np.random.default_rng(3)
    initial_state = [rng.normal(size=(BATCH, UNITS)).astype(np.float32) for _ in range(states)]
    apply, params = rnnjax.interop.from_keras(layer)
    assert_same_structure_and_close(
        apply(params, xs(2), initial_state=initial_state), layer(xs(2), initial_state=initial_state)
    )


@pytest.mark.parametrize("kind", KINDS)
def test_without_bias(keras, kind):
    layer = make_layer(keras, kind, use_bias=False, return_sequences=True)
    apply, params = rnnjax.interop.from_keras(layer)
    assert_same_structure_and_close(apply(params, xs(2)), layer(xs(2)))


@pytest.mark.parametrize("kind", KINDS)
def test_to_keras_round_trip(keras, kind):
    source = make_layer(keras, kind, bidirectional={}, seed=1, return_sequences=True)
    target = make_layer(keras, kind, bidirectional={}, seed=2, return_sequences=True)
    _, params = rnnjax.interop.from_keras(source)
    rnnjax.interop.to_keras(params, target)
    np.testing.assert_allclose(target(xs(2)), source(xs(2)), rtol=0, atol=1e-6)
    for a, b in zip(source.weights, target.weights, strict=True):
        np.testing.assert_array_equal(a.value, b.value)


def test_to_keras_from_rnnjax_init(keras):
    """Params made by rnnjax (not converted) load into Keras and compute the same."""
    cell = rnnjax.gru(UNITS)
    params = cell.init(jax.random.key(0), INPUT)
    params = params._replace(recurrent_bias=params.recurrent_bias + 0.3)
    layer = make_layer(keras, "gru-reset_after", return_sequences=True)
    rnnjax.interop.to_keras(params, layer)
    _, ys = rnnjax.rnn(cell, params, xs(2))
    np.testing.assert_allclose(ys, layer(xs(2)), rtol=0, atol=ATOL)


def test_unsupported_settings_name_the_setting(keras):
    with pytest.raises(
        ValueError,
        match=r"LSTM\(activation='relu'\) cannot be converted;"
        r" rnnjax supports activation in \('tanh',\)",
    ):
        rnnjax.interop.from_keras(make_layer(keras, "lstm", activation="relu"))
    with pytest.raises(
        ValueError, match=r"GRU\(recurrent_activation='hard_sigmoid'\) cannot be converted"
    ):
        rnnjax.interop.from_keras(
            make_layer(keras, "gru-reset_after", recurrent_activation="hard_sigmoid")
        )
    with pytest.raises(
        ValueError,
        match=r"SimpleRNN\(activation='elu'\) cannot be converted;"
        r" rnnjax supports activation in \('tanh', 'relu', 'sigmoid', 'linear'\)",
    ):
        rnnjax.interop.from_keras(make_layer(keras, "simple_rnn-tanh", activation="elu"))
    with pytest.raises(
        TypeError,
        match=r"layer must be a keras.layers.SimpleRNN, LSTM, GRU or a Bidirectional over one;"
        r" got Dense",
    ):
        rnnjax.interop.from_keras(keras.layers.Dense(3))
    with pytest.raises(ValueError, match=r"from_keras: the layer has no weights yet; call it once"):
        rnnjax.interop.from_keras(keras.layers.LSTM(3))


def test_to_keras_errors(keras):
    _, lstm_params = rnnjax.interop.from_keras(make_layer(keras, "lstm"))
    with pytest.raises(ValueError, match=r"a GRU layer takes GRUParams; got LSTMParams"):
        rnnjax.interop.to_keras(lstm_params, make_layer(keras, "gru-reset_after"))
    with pytest.raises(
        ValueError,
        match=r"a Bidirectional layer takes a \(forward, backward\) pair of params; got 1",
    ):
        rnnjax.interop.to_keras((lstm_params,), make_layer(keras, "lstm", bidirectional={}))
    _, reset_after = rnnjax.interop.from_keras(make_layer(keras, "gru-reset_after"))
    with pytest.raises(
        ValueError,
        match=r"a GRU layer with reset_after=False takes params of rnnjax.gru\(reset_after=False\)",
    ):
        rnnjax.interop.to_keras(reset_after, make_layer(keras, "gru-reset_before"))
    with pytest.raises(ValueError, match=r"nonzero bias but the LSTM layer has use_bias=False"):
        rnnjax.interop.to_keras(lstm_params, make_layer(keras, "lstm", use_bias=False))
    wide = keras.layers.LSTM(UNITS)
    wide(np.ones((1, 2, INPUT + 1), np.float32))
    with pytest.raises(
        ValueError,
        match=r"LSTM weights must have shapes \[\(5, 24\), \(6, 24\), \(24,\)\]; got \[\(4, 24\)",
    ):
        rnnjax.interop.to_keras(lstm_params, wide)
