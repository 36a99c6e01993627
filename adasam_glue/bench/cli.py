"""``python -m adasam_glue.bench``: run the benchmark sections, or render a written JSON as Markdown.

``python -m adasam_glue.bench [--quick] [--out DIR] [--model tiny|minilm|roberta-large-random ...]
[--device cpu|cuda] [--glue-dir DIR] [--sections ...]`` writes ``DIR/bench_quick.json`` (``--quick``)
or ``DIR/bench_full.json``; ``make bench-quick`` / ``make bench`` run it (``BENCH_OUT=dir``).
``python -m adasam_glue.bench --render JSON [--md OUT]`` renders any benchmark JSON (``bench_*``,
``overhead``, ``gpu_check``, ``hf_parity``) without benchmarking. The other commands:
``python -m adasam_glue.bench.hf_parity``, ``.overhead``, ``.gpu_check``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from adasam_glue.bench.runner import SECTIONS, SIZES, run_bench


def render(path: str) -> str:
    """The Markdown of a benchmark JSON, chosen by what the file holds."""
    from adasam_glue.bench import render as r
    from adasam_glue.bench.jsonio import read_json

    res = read_json(path)
    if "parity" in res:
        from adasam_glue.bench.render_parity import render_parity

        return render_parity(res, path)
    if "agreement" in res:
        return r.render_gpu_check(res, path)
    if "points" in res:
        return r.render_overhead_page(res, path)
    return r.render_markdown(res, source=path)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (module doc); 0 on success."""
    p = argparse.ArgumentParser(prog="python -m adasam_glue.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="< 5 minutes on 2 CPU cores")
    p.add_argument(
        "--out", default="results/bench", help="output folder (bench_quick.json / bench_full.json)"
    )
    p.add_argument(
        "--model",
        action="append",
        choices=sorted(SIZES),
        help="model(s) for the per-optimizer rows (default: tiny and minilm on CPU, "
        "roberta-large-random on CUDA); repeatable",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--glue-dir", default=None, help="GLUE TSV root (glue_data) for the padding section")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    p.add_argument("--render", metavar="JSON", default=None, help="do not benchmark: render a benchmark JSON")
    p.add_argument(
        "--md", metavar="OUT", default=None, help="with --render: write the Markdown here (else stdout)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: 1 on CPU, torch's own on CUDA). On a shared machine two "
        "OpenMP threads on two cores stall at every barrier when another process holds a core; one "
        "thread gives stable ratios",
    )
    a = p.parse_args(argv)
    if a.render:
        text = render(a.render)
        if a.md:
            from adasam_glue.records import atomic_write_text

            atomic_write_text(Path(a.md), text)
        else:
            sys.stdout.write(text)
        return 0
    threads = a.threads or (1 if a.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    run_bench(a.quick, a.out, a.model, a.device, a.glue_dir, a.sections, log=lambda s: print(s, flush=True))
    return 0
