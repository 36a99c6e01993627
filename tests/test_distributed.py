"""Two CPU processes (accelerate launch, torchrun, gloo): the run completes, and global SAM matches one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from adasam_glue.records import read_record
from adasam_glue.run import run
from tests.conftest import TINY

pytestmark = pytest.mark.distributed


def _launch(tmp_path, data_cache, *overrides: str) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    # accelerate 1.x: `launch --cpu --num_processes 2` goes through mpirun; on a machine without GPUs,
    # `--multi_gpu` starts two torchrun processes that come up as MULTI_CPU with the gloo backend.
    cmd = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "adasam_glue",
        *TINY,
        f"results_dir={tmp_path}",
        f"data.cache_dir={data_cache}",
        *overrides,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    scratch = tmp_path / "launch_tmp"  # torch elastic's per-launch log folders land here, not in /tmp
    scratch.mkdir(exist_ok=True)
    env["TMPDIR"] = str(scratch)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("optim", ["adasam"])
def test_two_process_global_sam_matches_one_process(tmp_path, data_cache, tiny_cfg, optim):
    common = [
        f"optim={optim}",
        "trainer.max_updates=3",
        "task.batch_size=8",
        "trainer.save_model=final",
        "optim.sync_ascent=true",
    ]
    out = _launch(tmp_path, data_cache, *common, f"run_dir={tmp_path / 'two'}")
    assert out.returncode == 0, out.stderr[-3000:]
    two = read_record(tmp_path / "two" / "record.json")
    assert two["status"] == "completed" and two["hardware"]["num_processes"] == 2
    assert two["forward_backward_passes"] == 2 * two["optimizer_updates"] == 6
    assert two["samples_seen"] == 3 * 8

    one = run(tiny_cfg(*common, run_dir=tmp_path / "one"))
    assert [p["loss"] for p in one["train_curve"]] == pytest.approx(
        [p["loss"] for p in two["train_curve"]], rel=1e-5
    )
    from safetensors.torch import load_file

    w1 = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-6, rtol=1e-5, msg=k)


@pytest.mark.slow
def test_two_process_per_device_ascent_completes(tmp_path, data_cache):
    out = _launch(tmp_path, data_cache, "optim=sam", "trainer.max_updates=2", f"run_dir={tmp_path / 'r'}")
    assert out.returncode == 0, out.stderr[-3000:]
    rec = read_record(tmp_path / "r" / "record.json")
    assert rec["status"] == "completed" and rec["optimizer_updates"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["optim=gsam", "trainer.grad_accum=2"],  # per-device GSAM directions, averaged (spec §2.10)
        ["optim=esam", "trainer.grad_accum=2"],  # selection forward under DDP (spec §2.11)
        ["optim=adasam", "trainer.mixed_precision=fp16"],  # the trainer's own GradScaler on CPU
    ],
    ids=["gsam-accum2", "esam-accum2", "adasam-fp16"],
)
def test_two_process_trainer_applies_the_same_update_on_both_ranks(tmp_path, data_cache, overrides):
    """Through the real trainer (per-device ascent): both ranks' AMSGrad moments are the same bytes,
    so both applied the same descent direction (the weights themselves are saved by rank 0 only).
    The registry-wide, weight-level version is tests/test_replicas.py."""
    run_dir = tmp_path / "r"
    out = _launch(
        tmp_path,
        data_cache,
        *overrides,
        "trainer.max_updates=4",
        "trainer.stop_after_updates=3",  # preempted: the checkpoint (one file per rank) stays
        f"run_dir={run_dir}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert read_record(run_dir / "record.json")["status"] == "preempted"
    ranks = [torch.load(run_dir / "checkpoint" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    moments = [r["optimizer"]["base_state"] for r in ranks]
    assert moments[0].keys() == moments[1].keys() and moments[0]
    for k in moments[0]:
        for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert torch.equal(moments[0][k][name], moments[1][k][name]), (k, name)
