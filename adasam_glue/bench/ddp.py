"""All-reduces per update under data parallelism: two CPU (gloo) processes, the real ``train_step``.

The claim checked: a SAM-family update with per-device ascent costs one gradient all-reduce, like the
base optimizer; ``optim.sync_ascent=true`` (global SAM) two; accumulation adds none. Each process
builds the tiny model through the harness (``conf/model/tiny.yaml``, Accelerate's DDP) and counts with
a DDP communication hook (``register_comm_hook``: one call per gradient bucket all-reduce, with its
bytes) plus a wrapper around ``torch.distributed.all_reduce`` for explicit all-reduces (a global
perturbation norm, the trainer's per-update statistics). The first update, which builds DDP's
buckets, is not counted.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from adasam_glue.bench.timing import median

#: (label, optimizer, sync_ascent, micro-batches per update)
DDP_VARIANTS = (
    ("sgd", "sgd", False, 1),
    ("amsgrad", "amsgrad", False, 1),
    ("sam", "sam", False, 1),
    ("adasam", "adasam", False, 1),
    ("adasam_sync_ascent", "adasam", True, 1),
    ("adasam_accum2", "adasam", False, 2),
    ("adasam_sync_ascent_accum2", "adasam", True, 2),
)
MICRO_ROWS, SEQ_LEN = 4, 16  #: per-process micro-batch of random ids


def _worker(rank: int, world: int, port: int, out_path: str, steps: int, cache_dir: str) -> None:
    """One process: every variant in turn, counts written by rank 0."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    import torch.distributed as dist

    explicit: list[int] = []
    in_hook = [False]
    real_all_reduce = dist.all_reduce

    def counting_all_reduce(tensor: torch.Tensor, *a: Any, **k: Any) -> Any:
        if not in_hook[0]:  # the comm hook's own all-reduce is counted by the hook
            explicit.append(tensor.numel() * tensor.element_size())
        return real_all_reduce(tensor, *a, **k)

    dist.all_reduce = counting_all_reduce
    results = {}
    for label, name, sync_ascent, accum in DDP_VARIANTS:
        results[label] = _count_variant(
            rank, world, name, sync_ascent, accum, steps, cache_dir, explicit, in_hook
        )
    if rank == 0:
        Path(out_path).write_text(json.dumps(results))
    dist.barrier()


def _count_variant(
    rank: int,
    world: int,
    name: str,
    sync_ascent: bool,
    accum: int,
    steps: int,
    cache_dir: str,
    explicit: list[int],
    in_hook: list[bool],
) -> dict[str, Any]:
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from adasam_glue.bench.harness import build_setup, build_trainer, optimizer_overrides

    torch.manual_seed(0)
    setup = build_setup(
        "tiny",
        "cpu",
        batch_size=MICRO_ROWS * world,
        num_batches=1,
        seq_len=SEQ_LEN,
        cache_dir=f"{cache_dir}/rank{rank}",  # each process its own data cache: no concurrent writes
        overrides=[f"trainer.grad_accum={accum}"] if accum > 1 else [],
    )
    buckets: list[int] = []

    def hook(state, bucket):  # type: ignore[no-untyped-def]  (DDP checks these annotations itself)
        buf = bucket.buffer()
        buckets.append(buf.numel() * buf.element_size())
        in_hook[0] = True
        try:
            return default_hooks.allreduce_hook(None, bucket)
        finally:
            in_hook[0] = False

    setup.model.register_comm_hook(state=None, hook=hook)
    ov = [*optimizer_overrides(name), f"optim.sync_ascent={str(sync_ascent).lower()}"]
    _, _, trainer = build_trainer(setup, ov)
    vocab = int(setup.raw_model.config.vocab_size)
    g = torch.Generator().manual_seed(100 + rank)
    per_update = []
    for step in range(steps + 1):
        buckets.clear()
        explicit.clear()
        trainer.train_step([_random_micro_batch(vocab, g) for _ in range(accum)])
        if step > 0:  # the first update builds DDP's buckets
            per_update.append((len(buckets), sum(buckets), len(explicit), sum(explicit)))
    param_bytes = setup.param_bytes
    setup.accelerator.free_memory(setup.model)
    return {
        "optimizer": name,
        "sync_ascent": sync_ascent,
        "micro_batches": accum,
        "param_bytes": param_bytes,
        **_counts(per_update, param_bytes),
    }


def _random_micro_batch(vocab: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, vocab, (MICRO_ROWS, SEQ_LEN), generator=g)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.randint(0, 2, (MICRO_ROWS,), generator=g),
    }


def _counts(per_update: list[tuple[int, int, int, int]], param_bytes: int) -> dict[str, Any]:
    """Medians over updates of (bucket all-reduces, their bytes, explicit all-reduces, their bytes)."""
    b, bb, e, eb = (list(x) for x in zip(*per_update))
    return {
        "allreduces_per_update": median([x + y for x, y in zip(b, e)]),
        "bucket_allreduces_per_update": median(b),
        "allreduce_bytes_per_update": median([x + y for x, y in zip(bb, eb)]),
        "explicit_allreduces_per_update": median(e),
        "grad_syncs_per_update": median(bb) / param_bytes,
        "per_update": [
            {
                "bucket_allreduces": x[0],
                "bucket_bytes": x[1],
                "explicit_allreduces": x[2],
                "explicit_bytes": x[3],
            }
            for x in per_update
        ],
    }


def bench_ddp(steps: int = 3, timeout_s: float = 300) -> dict[str, Any]:
    """Spawn two gloo processes; return the counts per variant (module doc)."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="adasam_bench_ddp_") as tmp:
        out = Path(tmp) / "ddp.json"
        ctx = mp.start_processes(
            _worker, args=(2, port, str(out), steps, tmp), nprocs=2, join=False, start_method="spawn"
        )
        deadline = time.time() + timeout_s
        while not ctx.join(timeout=5):
            if time.time() > deadline:
                for p in ctx.processes:
                    if p.is_alive():
                        p.terminate()
                raise TimeoutError(f"DDP benchmark did not finish in {timeout_s}s")
        results = json.loads(out.read_text())
    return {
        "world_size": 2,
        "backend": "gloo",
        "launcher": "torch.multiprocessing spawn + the run's Accelerator (cpu)",
        "model": "tiny (conf/model/tiny.yaml)",
        "counting": "DDP comm hook (one call per gradient bucket all-reduce) + wrapper around "
        "torch.distributed.all_reduce (explicit all-reduces)",
        "wall_s": time.perf_counter() - t0,
        "variants": results,
    }
