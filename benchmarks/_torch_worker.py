"""PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``, in a process of its own.

Its own process because torch's thread pool and XLA's contend when they share one. Uses every
core (``torch.set_num_threads(os.cpu_count())``); forward runs under ``torch.no_grad()``,
forward+backward calls ``backward()`` on the mean output w.r.t. the params and the inputs.
bfloat16 cases run a bfloat16 module on bfloat16 inputs. On a GPU it runs on CUDA (cuDNN);
on a TPU it is skipped. Started by ``run.py``; see :func:`_common.serve` for the protocol.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from _common import (
    KINDS,
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
        return {
            "versions": {"torch": torch.__version__},
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
            loss = module(inputs)[0].float().mean()
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
        modules = [
            (kind, layer_types[kind](case.input, case.hidden, batch_first=True))
            for kind in KINDS
            if kind in request["kinds"]
        ]
        rows: list[Row] = []
        notes = []
        for mode in MODES:
            ready = []
            for kind, module in modules:
                name = f"torch {type(module).__name__}"
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
