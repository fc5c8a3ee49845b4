"""Keras 3 on the JAX backend, in a process of its own (Keras picks its backend at import).

Each layer (``LSTM`` / ``GRU`` / ``SimpleRNN``, ``return_sequences=True``) runs through
``layer.stateless_call`` under ``jax.jit``, and its gradient is ``jax.value_and_grad`` over the
trainable variables and the inputs: the same JAX timing as the main process, not
``model.fit``. Started by ``run.py``; see :func:`_common.serve` for the protocol.
"""

from __future__ import annotations

import os
from typing import Any

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported, here or by anything else

import jax
from _common import TITLES, Case, Reply, Unavailable, serve
from _jax_impls import Candidate, bench_candidates, build, no_min_cells


def keras_candidates(kind: str, case: Case, key: jax.Array) -> list[Candidate]:
    """One Keras layer of ``kind``; bfloat16 weights are float32 ones cast (see below)."""
    no_min_cells(kind, "Keras")
    import keras

    layer_type = {
        "lstm": keras.layers.LSTM,
        "gru": keras.layers.GRU,
        "simple_rnn": keras.layers.SimpleRNN,
    }[kind]
    shape = (case.batch, case.time, case.input)
    reference = layer_type(case.hidden, return_sequences=True, seed=0)
    reference.build(shape)
    layer = reference
    if case.dtype != "float32":
        # Keras's orthogonal initialiser needs a QR decomposition that bfloat16 lacks, so
        # build the layer with zeros and hand it the float32 layer's weights, cast.
        layer = layer_type(
            case.hidden, return_sequences=True, dtype=case.dtype, recurrent_initializer="zeros"
        )
        layer.build(shape)
    params = [variable.value.astype(case.dtype) for variable in reference.trainable_variables]
    non_trainable = [variable.value for variable in layer.non_trainable_variables]

    def apply(params: list[jax.Array], xs: jax.Array) -> jax.Array:
        return layer.stateless_call(params, non_trainable, xs)[0]

    return [Candidate("keras", f"keras {TITLES[kind]}", kind, apply, params)]


def setup(config: dict[str, Any]) -> dict[str, Any]:
    import keras

    if keras.backend.backend() != "jax":
        raise Unavailable(f"Keras chose the {keras.backend.backend()} backend, not jax")
    if jax.default_backend() != config["backend"]:
        # e.g. a TPU, which admits one process at a time: never time Keras on another device.
        raise Unavailable(
            f"this process got JAX's {jax.default_backend()} backend, not {config['backend']}"
        )
    return {"versions": {"keras": keras.__version__}, "keras_backend": "jax"}


def bench(request: dict[str, Any]) -> Reply:
    case = Case(**request["case"])
    candidates, notes = build({"keras": keras_candidates}, ["keras"], request["kinds"], case)
    rows, more_notes = bench_candidates(candidates, case, request["warmup"], request["repeats"])
    return rows, notes + more_notes


if __name__ == "__main__":
    serve(setup, bench)
