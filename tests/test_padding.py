"""rnnjax.pad_sequences against Keras's own keras.utils.pad_sequences, and with rnnjax.rnn."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import rnnjax
from tests.peers import import_peer


@pytest.fixture(scope="module")
def keras():
    """Keras, imported when a test asks for it (a skip, or a failure under
    RNNJAX_REQUIRE_PEERS=1, when it is missing)."""
    return import_peer("keras")


@st.composite
def padding_cases(draw):
    """Sequences of token ids or of feature vectors (some empty), and Keras's arguments."""
    features = draw(st.sampled_from([(), (2,), (2, 3)]))
    lengths = draw(st.lists(st.integers(0, 7), min_size=1, max_size=5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    as_list = draw(st.booleans())
    sequences = []
    for length in lengths:
        steps = rng.integers(1, 100, size=(length, *features))
        sequences.append(steps.tolist() if as_list else steps)
    kwargs = {
        "maxlen": draw(st.none() | st.integers(1, 9)),
        "truncating": draw(st.sampled_from(["pre", "post"])),
        "padding": draw(st.sampled_from(["pre", "post"])),
        "dtype": draw(st.sampled_from(["int32", "float32"])),
        "value": draw(st.sampled_from([0, -1, 0.5])),
    }
    return sequences, kwargs


@given(padding_cases())
def test_pad_sequences_matches_keras(keras, case):
    sequences, kwargs = case
    if all(len(s) == 0 for s in sequences) and kwargs["maxlen"] is None:
        kwargs["maxlen"] = 3  # Keras reduces an all-zero maxlen with np.max and fails
    padded, lengths = rnnjax.pad_sequences(sequences, **kwargs)
    expected = keras.utils.pad_sequences(sequences, **kwargs)
    np.testing.assert_array_equal(padded, expected)
    assert padded.dtype == expected.dtype and lengths.dtype == np.int32
    maxlen = padded.shape[1]
    np.testing.assert_array_equal(lengths, [min(len(s), maxlen) for s in sequences])


def test_padding_defaults_to_post_and_truncating_to_pre_as_keras(keras):
    sequences = [[1, 2, 3, 4], [5]]
    padded, lengths = rnnjax.pad_sequences(sequences, maxlen=3)
    np.testing.assert_array_equal(
        padded, keras.utils.pad_sequences(sequences, maxlen=3, padding="post")
    )
    np.testing.assert_array_equal(padded, [[2, 3, 4], [5, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1])


def test_post_padded_lengths_are_seq_lengths_for_rnn():
    """Each row's final carry equals running the cell over that sequence alone."""
    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(n, 3)).astype(np.float32) for n in (4, 1, 6)]
    padded, lengths = rnnjax.pad_sequences(sequences, dtype="float32", value=7.0)
    cell = rnnjax.gru(5)
    params = cell.init(jax.random.key(0), 3)
    carry, _ = rnnjax.rnn(cell, params, jnp.asarray(padded), seq_lengths=jnp.asarray(lengths))
    for row, sequence in enumerate(sequences):
        alone, _ = rnnjax.rnn(cell, params, jnp.asarray(sequence)[None])
        np.testing.assert_allclose(carry[row], alone[0], rtol=1e-6, atol=1e-6)


def test_empty_input_and_all_empty_sequences():
    padded, lengths = rnnjax.pad_sequences([], maxlen=4)
    assert padded.shape == (0, 4) and lengths.shape == (0,)
    padded, lengths = rnnjax.pad_sequences([[], []])
    assert padded.shape == (2, 0) and list(lengths) == [0, 0]


@pytest.mark.parametrize(
    "sequences, kwargs, error, match",
    [
        (5, {}, TypeError, r"rnnjax.pad_sequences: sequences must be a list of sequences"),
        ("abc", {}, TypeError, r"sequences must be a list of sequences; got str"),
        ([[1], 2], {}, TypeError, r"sequences\[1\] is 2 of type int"),
        ([[1]], {"padding": "left"}, ValueError, r"padding must be one of \('post', 'pre'\)"),
        ([[1]], {"truncating": "end"}, ValueError, r"truncating must be one of"),
        ([[1]], {"maxlen": -1}, ValueError, r"maxlen must be an int >= 0; got -1"),
        ([[1]], {"maxlen": 2.0}, TypeError, r"maxlen must be an int >= 0; got 2.0"),
        ([[[1, 2]], [[1, 2, 3]]], {}, ValueError, r"sequences\[1\] has steps of shape \(3,\)"),
        ([[1]], {"value": "x"}, ValueError, r"value 'x' is a string but dtype 'int32'"),
    ],
)
def test_bad_input_raises_named_errors(sequences, kwargs, error, match):
    with pytest.raises(error, match=match):
        rnnjax.pad_sequences(sequences, **kwargs)


def test_strings_pad_with_dtype_object_as_keras(keras):
    sequences = [["a", "b"], ["c"]]
    padded, _ = rnnjax.pad_sequences(sequences, dtype=object, value="<pad>")
    expected = keras.utils.pad_sequences(sequences, dtype=object, value="<pad>", padding="post")
    np.testing.assert_array_equal(padded, expected)
