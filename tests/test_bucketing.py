"""rnnjax.training.bucket_batches: each example once per epoch, batches cut to their longest
sequence or bucket edge, and the loss of a cut batch equal to the full-length batch's."""

import hypothesis.strategies as st
import jax
import numpy as np
import optax
import pytest
from hypothesis import given

import rnnjax
import rnnjax.training as training


def dataset(lengths, time=None, seed=0):
    """Post-padded token ids (padding 0, tokens >= 1), lengths and labels."""
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, 20, size=n) for n in lengths]
    ids, lengths = rnnjax.pad_sequences(sequences, maxlen=time)
    return {"ids": ids, "lengths": lengths, "labels": rng.integers(0, 2, len(lengths))}


@st.composite
def cases(draw):
    lengths = draw(st.lists(st.integers(0, 12), min_size=1, max_size=30))
    batch_size = draw(st.integers(1, len(lengths)))
    edges = draw(st.none() | st.lists(st.integers(1, 14), max_size=4, unique=True).map(sorted))
    return lengths, batch_size, edges, draw(st.integers(0, 3))


@given(cases())
def test_each_epoch_is_a_partition_and_batches_cut_only_padding(case):
    lengths, batch_size, boundaries, seed = case
    data = {**dataset(lengths, time=12), "index": np.arange(len(lengths))}
    get_batch = training.bucket_batches(
        data, batch_size, lengths=data["lengths"], boundaries=boundaries, seed=seed
    )
    per_epoch = len(lengths) // batch_size
    edges = [*(range(1, 13) if boundaries is None else boundaries), 12]
    for epoch in range(2):
        seen = []
        for step in range(epoch * per_epoch, (epoch + 1) * per_epoch):
            batch = get_batch(step)
            rows, time = batch["index"], batch["ids"].shape[1]
            longest = max(int(batch["lengths"].max()), 1)
            assert batch["ids"].shape[0] == batch_size
            assert time == min(edge for edge in edges if edge >= longest)
            np.testing.assert_array_equal(batch["ids"], data["ids"][rows, :time])
            assert not data["ids"][rows, time:].any()  # only padding was cut
            seen.extend(rows.tolist())
        assert len(seen) == len(set(seen)) == per_epoch * batch_size
    np.testing.assert_array_equal(get_batch(1)["index"], get_batch(1)["index"])  # pure in step


def test_every_example_exactly_once_per_epoch_and_epochs_reshuffle():
    lengths = np.random.default_rng(1).integers(1, 30, size=48)
    data = {**dataset(lengths), "index": np.arange(48)}
    get_batch = training.bucket_batches(data, 8, lengths=data["lengths"], boundaries=[10, 20])
    epochs = [[get_batch(step) for step in range(e * 6, e * 6 + 6)] for e in range(2)]
    for batches in epochs:
        indices = np.concatenate([batch["index"] for batch in batches])
        np.testing.assert_array_equal(np.sort(indices), np.arange(48))
        assert {batch["ids"].shape[1] for batch in batches} <= {10, 20, data["ids"].shape[1]}
    first, second = ([batch["index"] for batch in batches] for batches in epochs)
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_a_random_remainder_is_left_out_and_the_rest_seen_once():
    data = {**dataset([3, 1, 4, 1, 5, 9, 2]), "index": np.arange(7)}
    get_batch = training.bucket_batches(data, 2, lengths=data["lengths"])
    for epoch in range(3):
        seen = np.concatenate([get_batch(3 * epoch + i)["index"] for i in range(3)])
        assert len(set(seen.tolist())) == 6


def sentiment_loss(params, batch):
    """The sentiment example's small model: Embedding -> LSTM -> Dense, binary cross-entropy."""
    xs = params["embedding"][batch["ids"]]
    carry, _ = rnnjax.rnn(rnnjax.lstm(6), params["lstm"], xs, seq_lengths=batch["lengths"])
    logits = (carry.h @ params["out"])[..., 0]
    return optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean()


def test_cutting_never_changes_a_batch_loss():
    keys = jax.random.split(jax.random.key(0), 3)
    params = {
        "embedding": jax.random.normal(keys[0], (20, 5)),
        "lstm": rnnjax.lstm(6).init(keys[1], 5),
        "out": jax.random.normal(keys[2], (6, 1)),
    }
    lengths = np.random.default_rng(2).integers(1, 16, size=12)
    data = {**dataset(lengths), "index": np.arange(12)}
    full = jax.jit(sentiment_loss)
    get_batch = training.bucket_batches(data, 4, lengths=data["lengths"])
    for step in range(3):
        batch = get_batch(step)
        assert batch["ids"].shape[1] == batch["lengths"].max()
        unbucketed = {k: v[batch["index"]] for k, v in data.items()}  # same rows, full length
        np.testing.assert_allclose(full(params, batch), full(params, unbucketed), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"lengths": np.ones(5)}, TypeError, r"lengths must be integers \[examples\]; got dtype"),
        (
            {"lengths": np.ones(4, int)},
            ValueError,
            r"arrays and lengths must share their leading axis; got lengths \[4\]",
        ),
        ({"lengths": np.full(5, 9)}, ValueError, r"lengths must be in \[0, 8\]"),
        ({"batch_size": 6}, ValueError, r"batch_size must be in \[1, 5\]"),
        ({"boundaries": [4, 2]}, ValueError, r"boundaries must be increasing ints >= 1"),
    ],
)
def test_errors(kwargs, error, match):
    data = dataset([1, 2, 3, 8, 5])
    arguments = {"batch_size": 2, "lengths": data["lengths"], **kwargs}
    with pytest.raises(error, match=rf"rnnjax.training.bucket_batches: {match}"):
        training.bucket_batches(data, arguments.pop("batch_size"), **arguments)


def test_arrays_must_share_the_time_axis():
    data = {**dataset([1, 2]), "mask": np.ones((2, 3))}
    with pytest.raises(ValueError, match=r"must share one time axis; got shapes"):
        training.bucket_batches(data, 1, lengths=data["lengths"])
