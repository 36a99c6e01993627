"""Resume checkpoints and saved models of a run dir: what is written, atomically, and how it is read back.

A checkpoint (``<run_dir>/checkpoint/``) holds the model (``model.pt``, main process), each process's
optimizer (SAM state included), scheduler, loss scale and RNG states (``rank<k>.pt``), the trainer's
position (``trainer_state.json``) and ``meta.json`` naming what wrote it (process count, run identity),
so that a preempted run resumed later reaches the result of an uninterrupted one (docs/experiments.md,
"Resuming"). Folders are written beside the target and swapped in, so a kill leaves the old or the new
one, never half. Every failure to read one is a :class:`CheckpointError` naming the file and the way out.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_DIR = "checkpoint"
MODEL_DIR = "model"  #: HF ``save_pretrained`` folder inside a run dir (model + tokenizer)


class CheckpointError(RuntimeError):
    """A resume checkpoint that cannot be used; the message names the file and how to recover."""


def recover_hint(run_dir: Path) -> str:
    ckpt = Path(run_dir) / CHECKPOINT_DIR
    return (
        f"To restart this run from update 0 instead, delete {ckpt} (the record keeps the earlier "
        "attempts' history); or restore the folder from a backup."
    )


def save_model(accelerator: Any, model: torch.nn.Module, tokenizer: Any, run_dir: Path) -> None:
    """HF ``save_pretrained`` of the model (+ tokenizer) to ``run_dir/model``, swapped in atomically."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp, dst = run_dir / f".{MODEL_DIR}.tmp", run_dir / MODEL_DIR
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.unwrap_model(model).save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _swap_dir(tmp, dst)
    accelerator.wait_for_everyone()


def save(
    accelerator: Any,
    run_dir: Path,
    model: torch.nn.Module,
    rank_state: dict[str, Any],
    trainer_state: dict[str, Any],
    identity_hash: str | None,
) -> None:
    """Write ``run_dir/checkpoint``: ``rank_state`` (optimizer, scheduler, loss scale: this process's)
    plus its RNG states, the model and ``trainer_state`` (main process); swapped in atomically."""
    acc = accelerator
    tmp, dst = run_dir / f".{CHECKPOINT_DIR}.tmp", run_dir / CHECKPOINT_DIR
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    torch.save({**rank_state, "rng": _rng_state()}, tmp / f"rank{acc.process_index}.pt")
    if acc.is_main_process:
        torch.save(acc.unwrap_model(model).state_dict(), tmp / "model.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state))
        meta = {
            "num_processes": acc.num_processes,
            "identity_hash": identity_hash,
            "updates": trainer_state["updates"],
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
    acc.wait_for_everyone()
    if acc.is_main_process:
        _swap_dir(tmp, dst)
    acc.wait_for_everyone()


def load(
    accelerator: Any, run_dir: Path, model: torch.nn.Module, identity_hash: str | None
) -> tuple[dict[str, Any], dict[str, Any], Path] | None:
    """Read ``run_dir/checkpoint`` into ``model`` and restore the RNGs; ``None`` when there is none.

    Returns this process's rank state (optimizer, scheduler, loss scale: the caller loads them), the
    trainer state and the rank file's path. ``identity_hash`` (``None``: not checked) must be the one
    that wrote it, and so must the process count."""
    ckpt = run_dir / CHECKPOINT_DIR
    if not (ckpt / "trainer_state.json").exists():
        return None
    acc, restart = accelerator, recover_hint(run_dir)
    meta = _read_json(ckpt / "meta.json", restart) if (ckpt / "meta.json").exists() else {}
    stored = meta.get("identity_hash")
    if stored and identity_hash and stored != identity_hash:
        raise CheckpointError(
            f"{ckpt} was written by a run of another identity ({stored}, this run is {identity_hash}): it "
            f"cannot be resumed under this config. {restart}"
        )
    rank_file = ckpt / f"rank{acc.process_index}.pt"
    written_by = meta.get("num_processes")
    if written_by is not None and written_by != acc.num_processes:
        raise CheckpointError(
            f"{ckpt} was written by {written_by} process(es); this run has {acc.num_processes}. Resume "
            f"with {written_by} process(es). {restart}"
        )
    if not rank_file.exists():
        present = sorted(p.name for p in ckpt.glob("rank*.pt"))
        raise CheckpointError(
            f"{rank_file} is missing (the checkpoint holds {', '.join(present) or 'no rank files'}): it is "
            f"incomplete or was written by a different number of processes. {restart}"
        )
    model_state = _torch_load(ckpt / "model.pt", restart)
    try:
        acc.unwrap_model(model).load_state_dict(model_state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{ckpt / 'model.pt'} does not fit this model ({str(e).splitlines()[0]}): it was written "
            f"for another architecture. {restart}"
        ) from e
    rank_state = _torch_load(rank_file, restart)
    _set_rng_state(rank_state["rng"])
    return rank_state, _read_json(ckpt / "trainer_state.json", restart), rank_file


def remove(run_dir: Path) -> None:
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)


def _torch_load(path: Path, recover: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete. {recover}") from None
    except Exception as e:  # truncated or corrupt file: torch raises OSError, RuntimeError, EOFError, ...
        raise CheckpointError(f"{path} is unreadable ({type(e).__name__}: {e}). {recover}") from e


def _read_json(path: Path, recover: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is unreadable ({type(e).__name__}: {e}). {recover}") from e


def _swap_dir(tmp: Path, dst: Path) -> None:
    """Replace ``dst`` by ``tmp`` so that a crash leaves either the old or the new folder, never half."""
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
