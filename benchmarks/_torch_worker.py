"""PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``, in a process of its own.

The min kinds run the PyPI package ``mingru-pytorch`` (``minGRU_pytorch``: its ``minGRU`` and
``minLSTM`` modules; see :func:`min_module`), where it is installed, and are skipped with a
note where it is not. It is not a dependency of rnnjax (``pip install mingru-pytorch==0.2.1``).

Its own process because torch's thread pool and XLA's contend when they share one. Uses every
core (``torch.set_num_threads(os.cpu_count())``); forward runs under ``torch.no_grad()``,
forward+backward calls ``backward()`` on the mean output w.r.t. the params and the inputs.
bfloat16 cases run a bfloat16 module on bfloat16 inputs. On a GPU it runs on CUDA (cuDNN);
on a TPU it is skipped. Started by ``run.py``; see :func:`_common.serve` for the protocol.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

from _common import (
    DIAGONAL_KINDS,
    KINDS,
    MIN_KINDS,
    MODES,
    Case,
    Reply,
    Row,
    Unavailable,
    make_row,
    round_robin,
    serve,
    skip_note,
    time_call,
)

MIN_MODULES = {"min_gru": "minGRU", "min_lstm": "minLSTM"}  # minGRU_pytorch.<name>.<name>


def mingru_pytorch_version() -> str | None:
    """The installed ``mingru-pytorch``'s version, or None."""
    from importlib import metadata

    try:
        return metadata.version("mingru-pytorch")
    except metadata.PackageNotFoundError:
        return None


def min_module(kind: str, case: Case) -> Any:
    """``mingru-pytorch``'s ``minGRU`` / ``minLSTM`` as a ``[B, T, I] -> [B, T, H]`` layer.

    What it computes (``minGRU_pytorch`` 0.2.1): ``Linear(I, gates * H, bias=False)`` on
    every step at once (``dim=I``, ``expansion_factor=H / I``, so its inner width is ``H``),
    then the paper's log-space parallel scan (Heinsen's: ``cumsum`` and ``logcumsumexp`` over
    time, then ``exp``), from a zero initial state; ``proj_out=False`` leaves out its output
    projection, so ``ys`` is ``h`` itself, ``[B, T, H]``, as rnnjax's. The same recurrence as
    ``rnnjax.min_gru`` / ``min_lstm`` (minLSTM's gates normalised the same way), with no bias
    in the projection (rnnjax has one). For ``T == 1`` it would take its sequential branch;
    the grid never has ``T == 1``.
    """
    class_name = MIN_MODULES[kind]
    try:
        module_type = getattr(importlib.import_module(f"minGRU_pytorch.{class_name}"), class_name)
    except ImportError as error:
        raise Unavailable(
            f"mingru-pytorch is not installed ({error}); pip install mingru-pytorch==0.2.1"
        ) from None
    expansion = case.hidden / case.input
    if int(case.input * expansion) != case.hidden:
        raise Unavailable(f"{class_name}'s inner width int(I * H / I) is not H={case.hidden}")
    return module_type(case.input, expansion_factor=expansion, proj_out=False)


def outputs(result: Any) -> Any:
    """``ys`` from a module's result: ``nn.LSTM`` and co. return ``(ys, state)``, minGRU ys."""
    return result[0] if isinstance(result, tuple) else result


class TorchBench:
    """The worker's state: the device chosen at setup."""

    def __init__(self) -> None:
        self.device = "cpu"

    def setup(self, config: dict[str, Any]) -> dict[str, Any]:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        if config["backend"] == "gpu" and torch.cuda.is_available():
            self.device = "cuda"
        elif config["backend"] != "cpu":
            raise Unavailable(f"torch has no device here for JAX's {config['backend']} backend")
        versions = {"torch": torch.__version__}
        if version := mingru_pytorch_version():
            versions["mingru-pytorch"] = version
        return {
            "versions": versions,
            "torch_device": self.device_name(),
            "torch_threads": torch.get_num_threads(),
        }

    def device_name(self) -> str:
        import torch

        if self.device == "cuda":
            return f"cuda {torch.cuda.get_device_name()}"
        return self.device

    def synchronize(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()

    def autocast(self, dtype: Any) -> Any:
        """bfloat16 runs as ``torch.autocast``: float32 module and inputs, bfloat16 matmuls."""
        import torch

        return torch.autocast(self.device, dtype=dtype, enabled=dtype != torch.float32)

    def forward(self, module: Any, xs: Any, dtype: Any) -> None:
        import torch

        with torch.no_grad(), self.autocast(dtype):
            module(xs)
        self.synchronize()

    def forward_backward(self, module: Any, xs: Any, dtype: Any) -> None:
        module.zero_grad(set_to_none=True)
        inputs = xs.detach().requires_grad_()
        with self.autocast(dtype):
            loss = outputs(module(inputs)).float().mean()
        loss.backward()
        self.synchronize()

    def peak_bytes(self) -> int | None:
        import torch

        return int(torch.cuda.max_memory_allocated()) if self.device == "cuda" else None

    def bench(self, request: dict[str, Any]) -> Reply:
        import torch

        case = Case(**request["case"])
        dtype = getattr(torch, case.dtype)
        torch.manual_seed(0)
        xs = torch.randn(case.batch, case.time, case.input, device=self.device)
        layer_types = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}
        rows: list[Row] = []
        notes = []
        modules = []
        for kind in (k for k in KINDS if k in request["kinds"]):
            if kind in DIAGONAL_KINDS:
                notes.append(skip_note(f"torch {kind}", Unavailable("no PyTorch cell")))
                continue
            if kind in MIN_KINDS:
                try:
                    module = min_module(kind, case)
                except Unavailable as error:
                    notes.append(skip_note(f"torch {kind}", error))
                    continue
                name = f"torch {MIN_MODULES[kind]} (mingru-pytorch)"
            else:
                module = layer_types[kind](case.input, case.hidden, batch_first=True)
                name = f"torch {type(module).__name__}"
            modules.append((kind, name, module))
        for mode in MODES:
            ready = []
            for kind, name, module in modules:
                if dtype != torch.float32:
                    name += " (autocast)"
                module.to(device=self.device)
                run = self.forward if mode == "forward" else self.forward_backward
                call = functools.partial(run, module, xs, dtype)
                if self.device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                try:
                    first = time_call(call)
                except Exception as error:  # e.g. a dtype this build lacks: skip it
                    notes.append(skip_note(f"{name} {mode}", error))
                    continue
                ready.append((kind, name, call, first, self.peak_bytes()))
            calls = [call for _, _, call, _, _ in ready]
            samples = round_robin(calls, request["warmup"], request["repeats"])
            for (kind, name, _, first, peak), taken in zip(ready, samples, strict=True):
                device = self.device_name()
                rows.append(make_row(case, mode, "torch", name, kind, device, first, taken, peak))
        return rows, notes


if __name__ == "__main__":
    worker = TorchBench()
    serve(worker.setup, worker.bench)
