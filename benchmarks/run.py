"""Times rnnjax against its peers on the same shapes, in one run, on whatever device JAX finds.

In this process, interleaved round-robin: rnnjax (LSTM, GRU, SimpleRNN, the LSTM also with
``backend="cudnn"`` on a CUDA GPU; MinGRU and MinLSTM with
``--kinds min_gru,min_lstm``, parallel and sequential, beside a floor without the recurrence),
Flax linen ``nn.RNN``
(OptimizedLSTMCell, LSTMCell, GRUCell, SimpleCell), Flax NNX ``nnx.RNN`` and, on a GPU,
``jax.experimental.rnn``'s cuDNN LSTM. In processes of their own, one after the other for
each shape: Keras 3 on the JAX backend and PyTorch (each skipped with a note where missing).
Forward and forward+backward are timed apart, the first call (compilation) is reported apart,
and tables give medians after a warm-up. Writes ``results.json`` (every sample), ``table.md``
and ``plot.png``; see benchmarks/README.md for what each figure means.

    python benchmarks/run.py                      # the default grid (minutes; 8 on 2 CPU cores)
    python benchmarks/run.py --quick              # a tiny grid (well under a minute)
    python benchmarks/run.py --impls rnnjax,torch --shape 64,256,256,256 --repeats 15
    python benchmarks/run.py --kinds min_gru,min_lstm --shape 8,16384,64,64
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_GRID,
    DEFAULT_KINDS,
    DTYPES,
    IMPLS,
    KINDS,
    QUICK_GRID,
    Case,
    Reply,
    Row,
    Worker,
    host,
    load_average,
)
from _report import full_table, sort_rows, write_reports

HERE = Path(__file__).resolve().parent
WORKER_SCRIPTS = {"keras": HERE / "_keras_worker.py", "torch": HERE / "_torch_worker.py"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="default grid (B, T, I, H, dtype): "
        + "; ".join(case.label for case in DEFAULT_GRID),
    )
    parser.add_argument("--quick", action="store_true", help="a tiny grid, to check the setup")
    parser.add_argument(
        "--shape", action="append", metavar="B,T,I,H", help="a shape to time (repeatable)"
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="dtype of --shape and --quick cases"
    )
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated, of: %(default)s")
    parser.add_argument(
        "--kinds",
        default=",".join(DEFAULT_KINDS),
        help=f"comma-separated, of: {','.join(KINDS)} (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, help="timed calls per implementation (7; quick 3)")
    parser.add_argument("--warmup", type=int, help="untimed calls after the first (2; quick 1)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="RESULTS_JSON",
        help="time nothing: rewrite table.md and plot.png beside an earlier results.json",
    )
    args = parser.parse_args(argv)
    for option, allowed in (("impls", IMPLS), ("kinds", KINDS)):
        chosen = getattr(args, option).split(",")
        if unknown := [value for value in chosen if value not in allowed]:
            parser.error(f"--{option}: unknown {unknown}; choose from {','.join(allowed)}")
        setattr(args, option, chosen)
    try:
        shapes = [Case.parse(text, args.dtype) for text in args.shape or []]
    except ValueError as error:
        parser.error(f"--shape: {error}")
    quick = [case._replace(dtype=args.dtype) for case in QUICK_GRID]
    args.grid = shapes or (quick if args.quick else list(DEFAULT_GRID))
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    return args


def start_workers(impls: list[str], backend: str) -> dict[str, Worker]:
    """A process per peer that needs its own, started before any timing."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    workers = {}
    for impl in impls:
        if impl in WORKER_SCRIPTS:
            workers[impl] = Worker(impl, WORKER_SCRIPTS[impl], {"backend": backend}, env)
    return workers


def bench_case(case: Case, args: argparse.Namespace, workers: dict[str, Worker]) -> Reply:
    """This process's implementations round-robin, then each worker's, one after the other."""
    import _jax_impls

    impls = [impl for impl in args.impls if impl in _jax_impls.BUILDERS]
    if "rnnjax" in impls:  # each rnnjax LSTM row with both backends: XLA ("auto") and cuDNN
        impls.insert(impls.index("rnnjax") + 1, "rnnjax-cudnn")
    candidates, notes = _jax_impls.build(_jax_impls.BUILDERS, impls, args.kinds, case)
    rows, more_notes = _jax_impls.bench_candidates(candidates, case, args.warmup, args.repeats)
    notes += more_notes
    request = dict(case=case._asdict(), kinds=args.kinds, warmup=args.warmup, repeats=args.repeats)
    for worker in workers.values():  # never two processes at once
        more_rows, more_notes = worker.bench(request)
        rows += more_rows
        notes += more_notes
    return rows, notes


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report:
        write_reports(json.loads(args.report.read_text()), args.report.parent)
        print(f"wrote {args.report.parent / 'table.md'} and plot.png from {args.report}")
        return
    # Let the worker processes share an accelerator with this one (JAX's default takes 75%).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import _jax_impls

    started = time.perf_counter()
    environment: dict[str, Any] = {**_jax_impls.environment(), "host": host()}
    dtypes = sorted({"float32", *(case.dtype for case in args.grid)}, key=DTYPES.index)
    matmul_before = {
        dtype: _jax_impls.matmul_gflops(dtype, size=512 if args.quick else 2048) for dtype in dtypes
    }

    notes: list[str] = []
    workers = start_workers(args.impls, environment["backend"])
    for name, worker in workers.items():
        if worker.available:
            environment["versions"].update(worker.hello["versions"])
            environment[name] = {k: v for k, v in worker.hello.items() if k != "versions"}
        else:
            notes.append(f"{name}: {worker.hello['note']}")
            print(notes[-1], flush=True)
    print(json.dumps(environment, indent=1), flush=True)
    for dtype, rate in matmul_before.items():
        print(f"matmul 2048^3 {dtype}, before the grid: {rate:,.1f} GFLOP/s", flush=True)

    rows: list[Row] = []
    for case in args.grid:
        case_rows, case_notes = bench_case(case, args, workers)
        rows += case_rows
        for note in case_notes:
            if note not in notes:
                notes.append(note)
                print(note, flush=True)
        print(full_table(sort_rows(case_rows, args.grid)), flush=True)
    for worker in workers.values():
        worker.close()
    # The device's rate: the better of two measurements, so a busy moment does not lower it.
    matmul_after = {
        dtype: _jax_impls.matmul_gflops(dtype, size=512 if args.quick else 2048) for dtype in dtypes
    }
    matmul = {dtype: max(matmul_before[dtype], matmul_after[dtype]) for dtype in dtypes}
    for dtype, rate in matmul_after.items():
        print(f"matmul 2048^3 {dtype}, after the grid: {rate:,.1f} GFLOP/s", flush=True)
    environment["host"]["load_average_after"] = load_average()
    for row in rows:
        row["percent_of_matmul"] = 100 * row["gflop_per_s"] / matmul[row["case"]["dtype"]]

    rows = sort_rows(rows, args.grid)
    settings = {
        "grid": [case._asdict() for case in args.grid],
        "impls": args.impls,
        "kinds": args.kinds,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "wall_s": time.perf_counter() - started,
    }
    report = {
        "environment": environment,
        "matmul_gflop_per_s": matmul,
        "matmul_gflop_per_s_before_after": [matmul_before, matmul_after],
        "settings": settings,
        "implementations": {  # rows per implementation (the min kinds' variants beside rnnjax)
            impl: sum(r["impl"] == impl for r in rows)
            for impl in dict.fromkeys([*args.impls, *(r["impl"] for r in rows)])
        },
        "notes": notes,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    write_reports(report, args.out)
    print(f"\nwrote {args.out / 'results.json'}, table.md and plot.png", flush=True)


if __name__ == "__main__":
    main()
