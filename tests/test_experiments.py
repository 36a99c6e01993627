"""The experiment layer: every experiment composes and expands to the right grid, the DRY_RUN plan,
bad input, launcher configs, and (tiny model, a few updates) multiruns that complete, skip and resume."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from adasam_glue.config import CONF_DIR
from adasam_glue.experiments import launchers
from adasam_glue.experiments import plan as ex
from adasam_glue.experiments import tuned_lr as tl
from adasam_glue.experiments.launchers import SlurmDistributedEnv

TASKS = ["mnli", "qnli", "qqp", "rte", "sst2", "mrpc", "cola", "stsb"]
SHRINK = [
    "model=tiny",
    "data.source=synthetic",
    "data.synthetic_train_size=32",
    "data.synthetic_eval_size=16",
    "task.max_length=32",
    "trainer.max_updates=2",
    "trainer.cpu=true",
    "trainer.progress_bar=false",
]
#: Runs per experiment, counted by hand: tasks x grid points x seeds.
EXPECTED_RUNS = {
    "table1": 8 * (1 + 3) * 3,  # AMSGrad + AdaSAM rho {0.01, 0.005, 0.001}
    "table2": 8 * (1 + 2) * 3,  # SGD + SAM rho {0.01, 0.005}
    "table3": 8 * (1 + 3) * 3,
    "table4": 8 * (1 + 2) * 3,
    "speedup": 3 * 4 * 3,  # MRPC, RTE, CoLA x batch 4, 8, 16, 32
    "variants": 4 * 7 * 3,  # small tasks x ASAM, USAM, GSAM, VaSSO, RSAM, ESAM, LightSAM
    "schedules": 4 * 2 * 4 * 3,  # small tasks x GSAM, AdaSAM x constant, linear, cosine, increasing batch
    "mnli_init": 1,
    "smoke": 2 * 2 * 1,
    "demo": 1,  # make demo (MiniLM, synthetic): one run, no sweep
    "table2_tune": 8 * 2 * 4 * 1,  # SGD + SAM (rho 0.01) x 4 lrs, seed 1
    "table4_tune": 8 * 2 * 4 * 1,
    "cpu_scale": 3 * (1 + 3) * 3,  # CPU-scale Table 1: CoLA, MRPC, STS-B
    "cpu_scale_matched": 3 * 1 * 3,  # its compute-matched AMSGrad row
    "cpu_scale_tune": 3 * 2 * 4 * 1,
    "cpu_scale_table2": 3 * (1 + 2) * 3,
    "cpu_scale_probe": 1,  # the probes are conf/probes/cpu_scale.yaml's list, not a grid
    "cpu_scale_low_resource": 4 * (1 + 3) * 3,  # the superseded 1,000-row setting
    "cpu_scale_low_resource_tune": 4 * 2 * 4 * 1,
    "cpu_scale_low_resource_table2": 4 * (1 + 2) * 3,
}
#: table -> the lr-tuning stage its SGD/SAM lr comes from, with the grid and momentum it is tuned at
TUNED = {
    "table2": ("table2_tune", [1e-3, 3e-3, 1e-2, 3e-2], 0.9),
    "table4": ("table4_tune", [1e-2, 3e-2, 1e-1, 3e-1], 0.0),
    "cpu_scale_table2": ("cpu_scale_tune", [3e-3, 1e-2, 3e-2, 1e-1], 0.9),
    "cpu_scale_low_resource_table2": ("cpu_scale_low_resource_tune", [3e-3, 1e-2, 3e-2, 1e-1], 0.9),
}
#: the CPU-scale experiments need a GLUE folder; composing and planning never read it
DATA = "data.data_dir=/nonexistent/glue_data"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}


def _compose(overrides, hydra_cfg=False):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra_cfg)


def _jobs(name, overrides=()):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return ex.Planner().sweep_jobs(name, list(overrides))


def _plan(name, overrides=()):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return ex.Planner().plan(name, list(overrides))


def _main(argv, capsys):
    rc = ex.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------------- composition
def test_every_experiment_file_is_listed():
    assert set(ex.available_experiments()) == set(EXPECTED_RUNS)


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_experiment_composes_and_names_its_runs(name):
    cfg = _compose([f"experiment={name}"], hydra_cfg=True)
    assert cfg.hydra.runtime.choices.experiment == name
    # The experiment's top-level values must win over the root config's (root `_self_` before `experiment`).
    assert cfg.experiment_name == name, (
        f"experiment_name={cfg.experiment_name!r}: the root config's own values override the experiment's; "
        "in conf/config.yaml `_self_` must come before `experiment: null`"
    )


@pytest.mark.parametrize("name,count", sorted(EXPECTED_RUNS.items()))
def test_sweep_expands_to_the_right_number_of_runs(name, count):
    jobs = _jobs(name)
    assert len(jobs) == count
    assert len({tuple(sorted(j)) for j in jobs}) == count  # no duplicate grid points


@pytest.mark.parametrize(
    "name,adaptive", [("table1", True), ("table2", False), ("table3", True), ("table4", False)]
)
def test_table_grids_pair_rho_only_with_the_sam_optimizer(name, adaptive):
    jobs = _jobs(name)
    methods = sorted({o.split("=", 1)[1] for j in jobs for o in j if o.startswith("method=")})
    tasks = {o.split("=", 1)[1] for j in jobs for o in j if o.startswith("task=")}
    seeds = {o.split("=", 1)[1] for j in jobs for o in j if o.startswith("seed=")}
    expected = (
        ["adasam_rho0.001", "adasam_rho0.005", "adasam_rho0.01", "amsgrad"]
        if adaptive
        else ["sam_rho0.005", "sam_rho0.01", "sgd"]
    )
    assert methods == expected and tasks == set(TASKS) and seeds == {"1", "2", "3"}
    beta1 = 0.9 if name in ("table1", "table2") else 0.0
    for method in methods:
        cfg = _compose([f"experiment={name}", f"method={method}", "task=rte"])
        assert cfg.optim.name == method.split("_")[0] and cfg.optim.beta1 == beta1
        if "_rho" in method:
            assert cfg.optim.rho == float(method.split("_rho")[1])
        else:
            assert cfg.optim.rho is None  # AMSGrad/SGD: no rho (setting it is an error)


def test_speedup_scales_lr_by_sqrt_batch_over_recipe_batch():
    cfgs = {
        bs: _compose(["experiment=speedup", "task=mrpc", f"task.batch_size={bs}"]) for bs in (4, 8, 16, 32)
    }
    for bs, cfg in cfgs.items():
        assert cfg.optim.name == "adasam" and cfg.trainer.log_every == 1
        assert cfg.optim.lr == pytest.approx(1e-5 * (bs / 16) ** 0.5)
    cola = _compose(["experiment=speedup", "task=cola", "task.batch_size=32"])
    assert cola.optim.lr == pytest.approx(1e-5 * 2**0.5)
    assert {o for j in _jobs("speedup") for o in j if o.startswith("task=")} == {
        "task=mrpc",
        "task=rte",
        "task=cola",
    }


def test_schedule_points_and_sharpness():
    inc = _compose(["experiment=schedules", "schedule=increasing_batch", "task=rte"])
    assert list(inc.trainer.batch_schedule) == [16, 32, 64, 128, 256] and inc.trainer.schedule == "constant"
    assert inc.sharpness.enabled
    cos = _compose(["experiment=schedules", "schedule=cosine", "optim=adasam"])
    assert (
        cos.trainer.schedule == "cosine"
        and cos.trainer.min_lr_ratio == 0.01
        and cos.trainer.batch_schedule is None
    )


def test_variants_cover_every_sam_variant():
    optims = {o.split("=", 1)[1] for j in _jobs("variants") for o in j if o.startswith("optim=")}
    assert optims == {"asam", "usam", "gsam", "vasso", "rsam", "esam", "lightsam"}


def test_untuned_lr_applies_to_direct_runs_only():
    # conf/untuned_lr keeps an untuned default for direct runs, tests and the benchmark ...
    cfg = _compose(["task=rte", "optim=sam"], hydra_cfg=True)
    assert cfg.hydra.runtime.choices.untuned_lr == "sam" and cfg.optim.lr == 1e-3
    # ... which no table reads: their SGD/SAM lr is the tuning stage's (the experiment merges later)
    for table, (tuning, _, _) in TUNED.items():
        cfg = _compose([f"experiment={table}", "task=rte", "method=sam_rho0.005", DATA])
        raw = OmegaConf.to_container(cfg.optim, resolve=False)["lr"]
        assert raw == f"${{tuned_lr:{tuning}}}" and tl.tuned_by(cfg) == tuning


def test_slurm_launcher_config():
    cfg = _compose(
        ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2"], hydra_cfg=True
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == 4 and launcher["nodes"] == 2  # one process per GPU
    assert launcher["max_num_timeout"] > 0 and launcher["additional_parameters"]["requeue"] is True
    # The signal is fixed by the config, for sbatch and for submitit's handler in the job alike
    # (the sbatch text itself: tests/test_slurm_sbatch.py).
    assert launcher["additional_parameters"]["signal"] == f"USR2@{launcher['signal_delay_s']}"
    assert any("SUBMITIT_PREEMPT_SIGNAL=USR2" in line for line in launcher["setup"])
    assert (
        cfg.hydra.callbacks.slurm_distributed_env._target_
        == "adasam_glue.experiments.launchers.SlurmDistributedEnv"
    )
    local = _compose(["hydra/launcher=submitit_local_test"], hydra_cfg=True)
    assert local.hydra.launcher._target_.endswith("LocalLauncher")


def test_slurm_callback_is_a_noop_outside_submitit(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    SlurmDistributedEnv().on_job_start(config=None)
    assert "RANK" not in os.environ


# -------------------------------------------------------------------------------------------- plan
def test_dry_run_plan_lines_and_summary(capsys, tmp_path):
    rc, out, _ = _main(
        ["reproduce-all", "--dry-run", "task=rte", "seed=1", f"results_dir={tmp_path}"], capsys
    )
    assert rc == 0
    lines = out.splitlines()
    runs = [line for line in lines if line.startswith("run: ")]
    # the lr-tuning stages of tables 2/4 (2 optimizers x 4 lrs each), then tables 1-4 + speedup
    assert len(runs) == 2 * 8 + 4 + 3 + 4 + 3 + 4
    r, fp = f"results_dir={tmp_path} seed=1", "trainer.mixed_precision=fp16"
    tuned2 = "  # optim.lr: tuned by table2_tune (not selected yet)"
    tuned4 = "  # optim.lr: tuned by table4_tune (not selected yet)"
    for line in [
        f"run: experiment=table2_tune task=rte optim=sgd optim.beta1=0.9 optim.lr=0.001 trainer.mixed_precision=fp16 trainer.save_model=none {r}",
        f"run: experiment=table2_tune task=rte optim=sam optim.rho=0.01 optim.beta1=0.9 optim.lr=0.03 "
        f"trainer.mixed_precision=fp16 trainer.save_model=none {r}",
        f"run: experiment=table4_tune task=rte optim=sgd optim.beta1=0.0 optim.lr=0.3 trainer.mixed_precision=fp16 trainer.save_model=none {r}",
        f"run: experiment=table1 task=rte optim=amsgrad optim.beta1=0.9 {fp} {r}",
        f"run: experiment=table1 task=rte optim=adasam optim.rho=0.001 optim.beta1=0.9 {fp} {r}",
        f"run: experiment=table2 task=rte optim=sgd optim.beta1=0.9 {fp} {r}{tuned2}",
        f"run: experiment=table2 task=rte optim=sam optim.rho=0.005 optim.beta1=0.9 {fp} {r}{tuned2}",
        f"run: experiment=table3 task=rte optim=adasam optim.rho=0.01 optim.beta1=0.0 {fp} {r}",
        f"run: experiment=table4 task=rte optim=sam optim.rho=0.01 optim.beta1=0.0 {fp} {r}{tuned4}",
        f"run: experiment=speedup task=rte optim=adasam optim.rho=0.01 optim.beta1=0.9 task.batch_size=4 "
        f"optim.lr=1e-05 {fp} {r}",
    ]:
        assert line in runs, line
    # The tuning runs come first, each stage followed by its selection; the tables after them.
    first_table = next(i for i, line in enumerate(lines) if "experiment=table1 " in line)
    is_tuning = [line.split()[1] in ("experiment=table2_tune", "experiment=table4_tune") for line in runs]
    assert is_tuning == [True] * 16 + [False] * (len(runs) - 16)
    selects = [i for i, line in enumerate(lines) if line.startswith("select: ")]
    assert len(selects) == 2 and selects[-1] < first_table
    assert lines[selects[0]].startswith(
        f"select: table2_tune -> {tmp_path}/runs/table2_tune/<task>/<optim>/tuned_lr.json"
    )
    assert "summary: 34 runs, 0 done, 0 diverged, 34 to do" in out
    assert "table2_tune (lr-tuning stage of table2): 8 runs" in out
    assert "lr: 6 runs (table2, table4) take optim.lr from the lr-tuning stage" in out
    assert "no placeholder lr in this plan" in out and "placeholder lr (no recipe" not in out
    assert "GPU-hours" in out and "2 passes per update for the SAM family" in out
    multiruns = out.split("multiruns, in order:")[1]
    assert (
        multiruns.index("experiment=table2_tune")
        < multiruns.index("select-lr table2_tune")
        < multiruns.index("experiment=table1")
    )
    assert "python -m adasam_glue -m experiment=table1 hydra/launcher=local" in out


def test_plan_line_composes_the_same_config_as_the_job(tmp_path):
    (run,) = [
        r
        for r in _plan("schedules", ["task=rte", "seed=2", f"results_dir={tmp_path}"])
        if r.optim == "gsam" and "trainer.batch_schedule=[16,32,64,128,256]" in r.line
    ]
    job = _compose(list(run.job_overrides))
    explicit = _compose(list(run.line))
    assert OmegaConf.to_container(job, resolve=True) == OmegaConf.to_container(explicit, resolve=True)


def test_plan_counts_done_runs(tmp_path, capsys):
    (run, *_) = _plan("table1", ["task=cola", "seed=1", f"results_dir={tmp_path}"])
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "record.json").write_text(json.dumps({"status": "completed"}))
    rc, out, _ = _main(
        ["reproduce-all", "--dry-run", "--only", "table1", "task=cola", "seed=1", f"results_dir={tmp_path}"],
        capsys,
    )
    assert rc == 0 and "summary: 4 runs, 1 done, 0 diverged, 3 to do" in out


def test_run_dirs_never_collide_across_grid_points(tmp_path):
    _fake_tuning(tmp_path, "table2_tune", ["task=rte"], best=0.01)
    _fake_tuning(tmp_path, "table4_tune", ["task=rte"], best=0.1)
    names = ["table1", "table2", "table3", "table4", "speedup", "variants", "schedules", "mnli_init"]
    names += ["table2_tune", "table4_tune"]
    # one seed: seeds only add the seed<k> level under a grid point's dir; the grid points are the question
    dirs = [r.run_dir for n in names for r in _plan(n, ["task=rte", f"results_dir={tmp_path}", "seed=1"])]
    assert None not in dirs  # every tuned lr selected, so every run dir is known
    assert len(dirs) == len(set(dirs)) == (4 + 3 + 4 + 3) + 4 + 7 + 2 * 4 + 1 + 2 * 8
    assert {Path(d).name for d in dirs} == {"seed1"}


@pytest.mark.slow
def test_full_plan_covers_the_paper(capsys, tmp_path):
    rc, out, _ = _main(
        ["reproduce-all", "--dry-run", "--only", ",".join(EXPECTED_RUNS), DATA, f"results_dir={tmp_path}"],
        capsys,
    )
    assert rc == 0
    runs = [line for line in out.splitlines() if line.startswith("run: ")]
    assert len(runs) == len(set(runs)) == sum(EXPECTED_RUNS.values())
    for task in TASKS:
        for beta1 in ("0.9", "0.0"):
            for opt in (
                "optim=amsgrad",
                "optim=adasam optim.rho=0.01",
                "optim=adasam optim.rho=0.005",
                "optim=adasam optim.rho=0.001",
                "optim=sgd",
                "optim=sam optim.rho=0.01",
                "optim=sam optim.rho=0.005",
            ):
                assert any(f"task={task} {opt} optim.beta1={beta1}" in r for r in runs), (task, opt, beta1)


def test_own_mnli_orders_mnli_first_and_points_dependents_at_it(capsys, tmp_path):
    rc, out, _ = _main(
        [
            "reproduce-all",
            "--dry-run",
            "--own-mnli",
            "--only",
            "table1",
            "task=qnli,rte",
            "seed=1",
            f"results_dir={tmp_path}",
        ],
        capsys,
    )
    assert rc == 0
    runs = [line for line in out.splitlines() if line.startswith("run: ")]
    assert runs[0].startswith("run: experiment=mnli_init task=mnli optim=amsgrad")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        mnli_dir = ex.Planner().plan("mnli_init", [f"results_dir={tmp_path}"])[0].run_dir
    rte = [r for r in runs if "task=rte" in r]
    qnli = [r for r in runs if "task=qnli" in r]
    assert len(rte) == len(qnli) == 4
    assert all(
        f"model.mnli_checkpoint={mnli_dir}" in r and "experiment_name=table1-own-mnli" in r for r in rte
    )
    assert not any("mnli_checkpoint" in r or "own-mnli" in r for r in qnli)
    multiruns = out.split("multiruns, in order:")[1].strip().splitlines()
    assert [m.split()[4] for m in multiruns] == [
        "experiment=mnli_init",
        "experiment=table1",
        "experiment=table1",
    ]


# ------------------------------------------------------------------------------- lr-tuning stage
def _fake_tuning(results_dir, tuning, overrides, best, diverged=(), missing=(), select=True, flat=False):
    """Records for a tuning experiment's planned runs (dev metric peaks at lr=best, in log10; ``diverged``:
    (optimizer, lr) pairs; ``missing``: lrs without a record; ``flat``: one metric for every lr), then
    select."""
    import math

    from adasam_glue.tasks import TASKS

    overrides = [*overrides, f"results_dir={results_dir}"]
    for r in _plan(tuning, overrides):
        if r.lr in missing:
            continue
        metric = TASKS[r.task].selection_metric
        value = 0.68 if flat else 0.8 - 0.1 * abs(math.log10(r.lr) - math.log10(best))
        status = "diverged" if (r.optim, r.lr) in diverged else "completed"
        r.run_dir.mkdir(parents=True, exist_ok=True)
        rec = {
            "status": status,
            "selection_metric": metric,
            "best": {"update": 7, "metrics": {metric: value}},
        }
        (r.run_dir / "record.json").write_text(json.dumps(rec))
    if select:
        return ex.select_lr(tuning, overrides)
    return None


def test_tuning_grids_seeds_and_methods():
    def values_of(jobs, key):
        return {o.split("=", 1)[1] for j in jobs for o in j if o.startswith(key + "=")}

    for table, (tuning, grid, beta1) in TUNED.items():
        jobs = _jobs(tuning, [DATA])
        values = functools.partial(values_of, jobs)
        assert sorted(float(v) for v in values("optim.lr")) == grid
        assert values("method") == {"sgd", "sam_rho0.01"}  # SAM tuned at one rho: 0.01
        assert values("seed") == {"1"}
        assert values("task") == {
            o.split("=", 1)[1] for j in _jobs(table, [DATA]) for o in j if o.startswith("task=")
        }
        cfg = _compose([f"experiment={tuning}", "task=rte", "method=sam_rho0.01", "optim.lr=0.01", DATA])
        assert cfg.optim.beta1 == beta1 and cfg.optim.rho == 0.01 and tl.is_tuning_experiment(tuning)


@pytest.mark.parametrize("table", sorted(TUNED))
def test_tuning_stage_and_table_share_the_recipe(table):
    tuning = TUNED[table][0]
    for task in ("rte", "cola"):
        for tune_method, table_methods in (
            ("sgd", ["sgd"]),
            ("sam_rho0.01", ["sam_rho0.01", "sam_rho0.005"]),
        ):
            tuned = tl.recipe(
                _compose([f"experiment={tuning}", f"task={task}", f"method={tune_method}", DATA])
            )
            for m in table_methods:
                assert (
                    tl.recipe(_compose([f"experiment={table}", f"task={task}", f"method={m}", DATA])) == tuned
                )


def test_cpu_scale_family_follows_cpu_scale_recipe():
    base = _compose(["experiment=cpu_scale", "task=mrpc", DATA])
    for name in ("cpu_scale_tune", "cpu_scale_table2"):
        cfg = _compose([f"experiment={name}", "task=mrpc", "method=sgd", "optim.lr=0.01", DATA])
        for group in ("task", "model", "data"):
            assert cfg[group] == base[group], (name, group)
        trainer = {k: v for k, v in OmegaConf.to_container(cfg.trainer).items() if k != "save_model"}
        assert trainer == {k: v for k, v in OmegaConf.to_container(base.trainer).items() if k != "save_model"}
        assert cfg.optim.beta1 == 0.9 and cfg.data.source == "tsv" and cfg.model.name == "minilm"
    table2 = _compose(["experiment=cpu_scale_table2", "task=rte", DATA])
    assert table2.sharpness == base.sharpness and table2.trainer.save_model == base.trainer.save_model
    assert _compose(["experiment=cpu_scale_tune", "task=rte", DATA]).trainer.save_model == "none"


def test_cpu_scale_data_dir_is_an_argument():
    for name in ("cpu_scale", "cpu_scale_tune", "cpu_scale_table2"):
        data = _compose([f"experiment={name}"]).data  # unset: `???` in the YAML merges as the schema's None
        assert OmegaConf.is_missing(data, "data_dir") or data.data_dir is None
        assert _compose([f"experiment={name}", "data.data_dir=/my/glue"]).data.data_dir == "/my/glue"
    for name in ("cpu_scale_tune", "cpu_scale_table2"):
        assert (
            OmegaConf.select(OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml"), "data.data_dir")
            is None
        )


def test_table_run_without_tuned_lr_fails_naming_the_tuning_command(tmp_path):
    from omegaconf.errors import InterpolationResolutionError

    cfg = _compose(["experiment=table2", "task=rte", "method=sgd", f"results_dir={tmp_path}"])
    with pytest.raises(InterpolationResolutionError) as e:
        OmegaConf.to_container(cfg, resolve=True)
    msg = str(e.value)
    assert "python -m adasam_glue.experiments reproduce-all --only table2_tune" in msg
    assert str(tmp_path / "runs" / "table2_tune" / "rte" / "sgd" / "tuned_lr.json") in msg


def test_select_lr_best_dev_metric_never_a_diverged_run_and_edge_flag(tmp_path, capsys):
    # 0.01 would be best but diverged for SGD: 0.03 wins (closer than 0.003), at the high edge of the grid.
    _fake_tuning(tmp_path, "table2_tune", ["task=rte"], best=0.01, diverged=(("sgd", 0.01),), select=False)
    rc, out, err = _main(["select-lr", "table2_tune", "task=rte", f"results_dir={tmp_path}"], capsys)
    assert rc == 0, err
    assert "selected rte/sgd: lr=0.03" in out and "AT THE HIGH EDGE" in out
    sel = json.loads((tmp_path / "runs/table2_tune/rte/sgd/tuned_lr.json").read_text())
    assert sel["schema_version"] == 1 and sel["kind"] == "tuned_lr" and sel["selection_metric"] == "accuracy"
    assert sel["grid"] == [0.001, 0.003, 0.01, 0.03] and sel["seeds"] == [1]
    assert [p["status"] for p in sel["points"]] == ["completed", "completed", "diverged", "completed"]
    assert sel["points"][2]["metric"] is None and sel["points"][0]["metric"] == pytest.approx(0.7)
    assert sel["lr"] == 0.03 and sel["at_edge"] is True and sel["edge"] == "high"
    assert sel["tuned_at"] == {"beta1": 0.9, "rho": None, "weight_decay": 0.1}
    # Each seed names its run relative to the file's folder: the same on every clone of a committed tree.
    sel_dir = tmp_path / "runs/table2_tune/rte/sgd"
    for point in sel["points"]:
        for s in point["seeds"]:
            assert not Path(s["run_dir"]).is_absolute() and "\\" not in s["run_dir"], s["run_dir"]
            assert (sel_dir / s["run_dir"] / "record.json").is_file(), s["run_dir"]
    sam = json.loads((tmp_path / "runs/table2_tune/rte/sam/tuned_lr.json").read_text())
    assert (
        sam["lr"] == 0.01
        and sam["at_edge"] is False
        and sam["edge"] is None
        and sam["tuned_at"]["rho"] == 0.01
    )
    # The table's jobs now read it (SAM at rho 0.005 too) ...
    for method, lr in (("sgd", 0.03), ("sam_rho0.005", 0.01)):
        cfg = _compose(["experiment=table2", "task=rte", f"method={method}", f"results_dir={tmp_path}"])
        assert cfg.optim.lr == lr
    # ... and the plan shows the lr, the dir it gives, and the edge warning.
    rc, out, _ = _main(
        ["reproduce-all", "--dry-run", "--only", "table2", "task=rte", "seed=1", f"results_dir={tmp_path}"],
        capsys,
    )
    assert rc == 0
    assert (
        f"run: experiment=table2 task=rte optim=sgd optim.beta1=0.9 trainer.mixed_precision=fp16 results_dir={tmp_path} "
        "seed=1  # optim.lr=0.03 tuned by table2_tune" in out
    )
    assert "table2_tune (lr-tuning stage of table2): 8 runs, 7 done, 1 diverged, 0 to do" in out
    assert "warning: tuned lr at the high edge of its grid: rte/sgd lr=0.03" in out
    assert "(2 written)" in out
    # ... and the report shows the selection, the grid and the edge flag (paths relative to the tree).
    from adasam_glue.report import build_report

    build_report(tmp_path / "runs", tmp_path / "report", figures=False, skip_unknown_schema=True)
    page = (tmp_path / "report" / "lr_tuning.md").read_text()
    grid = "0.001, 0.003, 0.01, 0.03"
    assert f"| table2_tune | RTE | SGD | {grid} | 0.03 | acc " in page
    assert f"| table2_tune | RTE | SAM | {grid} | 0.01 | acc " in page
    assert page.count("**yes: the highest lr of the grid**") == 1
    assert "| 0.01 | — | diverged |" in page and str(tmp_path) not in page
    assert "lr_tuning.md" in (tmp_path / "report" / "README.md").read_text()
    # ... and selecting again on the same finished grid leaves the (committed) files byte for byte
    files = sorted((tmp_path / "runs/table2_tune").rglob("tuned_lr.json"))
    before = [f.read_bytes() for f in files]
    time.sleep(1.1)  # written_at has one-second resolution
    assert _main(["select-lr", "table2_tune", "task=rte", f"results_dir={tmp_path}"], capsys)[0] == 0
    assert [f.read_bytes() for f in files] == before


def test_select_choice_ties_go_to_the_smaller_lr():
    pts = [
        {"lr": lr, "metric": m, "status": "completed"}
        for lr, m in ((1e-3, 0.5), (3e-3, 0.7), (1e-2, 0.7), (3e-2, 0.1))
    ]
    assert tl.choose(pts) == (3e-3, None)
    assert tl.choose([{**p, "status": "diverged", "metric": None} for p in pts]) == (None, None)
    assert tl.choose(pts[:1]) == (1e-3, "both")
    assert tl.choose(pts[1:]) == (3e-3, None) and tl.tied_lrs(pts[1:], 3e-3) == [3e-3, 1e-2]  # no edge
    assert tl.choose([pts[0], pts[3]]) == (1e-3, "low")  # strictly best at the smallest lr: an edge


def test_a_grid_where_every_lr_ties_is_flat_not_an_edge(tmp_path):
    """CPU scale, MRPC: SGD predicted the majority class at every lr of the grid (one dev accuracy for
    all): the tie rule picks the smallest lr, and "extend the grid downward" would be wrong advice."""
    from adasam_glue.report.lr_tuning import _edge

    pts = [{"lr": lr, "metric": 0.6838235294117647, "status": "completed"} for lr in (3e-3, 1e-2, 3e-2, 1e-1)]
    assert tl.choose(pts) == (3e-3, None) and tl.tied_lrs(pts, 3e-3) == [3e-3, 1e-2, 3e-2, 1e-1]
    assert "every lr ties" in _edge({"flat": True, "at_edge": False, "tied": [3e-3, 1e-2]})
    assert _edge({"flat": False, "at_edge": False, "tied": [3e-3, 1e-2]}) == "no (ties 0.003, 0.01)"
    assert _edge({"at_edge": True, "edge": "high"}) == "**yes: the highest lr of the grid**"
    lines, ok = _fake_tuning(tmp_path, "table2_tune", ["task=rte", "method=sgd", DATA], best=0.01, flat=True)
    assert ok and "EVERY lr TIES" in lines[0] and "EDGE" not in lines[0]
    sel = json.loads(tl.selection_path(tmp_path, "table2_tune", "rte", "sgd").read_text())
    assert sel["flat"] and not sel["at_edge"] and sel["lr"] == min(sel["grid"]) and sel["tied"] == sel["grid"]


def test_select_lr_refuses_an_unfinished_grid(tmp_path, capsys):
    _fake_tuning(
        tmp_path, "table2_tune", ["task=rte", "method=sgd"], best=0.01, missing=(0.003,), select=False
    )
    rc, out, err = _main(
        ["select-lr", "table2_tune", "task=rte", "method=sgd", f"results_dir={tmp_path}"], capsys
    )
    assert rc == 1 and "not selected rte/sgd: unfinished grid points (lr 0.003 seed 1: not run)" in err
    assert not (tmp_path / "runs/table2_tune/rte/sgd/tuned_lr.json").exists()
    rc, _, err = _main(["select-lr", "table1"], capsys)
    assert rc == 2 and "not an lr-tuning experiment" in err and "table2_tune" in err


def test_tuned_lr_of_another_recipe_is_refused(tmp_path):
    from omegaconf.errors import InterpolationResolutionError

    _fake_tuning(tmp_path, "table2_tune", ["task=rte", "method=sgd", "trainer.max_updates=50"], best=0.01)
    ok = _compose(
        ["experiment=table2", "task=rte", "method=sgd", "trainer.max_updates=50", f"results_dir={tmp_path}"]
    )
    assert ok.optim.lr == 0.01
    cfg = _compose(["experiment=table2", "task=rte", "method=sgd", f"results_dir={tmp_path}"])
    with pytest.raises(
        InterpolationResolutionError, match=r"another recipe \(trainer.max_updates: tuned 50, this run None"
    ):
        OmegaConf.to_container(cfg, resolve=True)


def test_tuned_lr_recipe_states_the_label_count_as_the_identity_does(tmp_path):
    """task.num_labels left conf/ (the task registry holds it; the identity injects it): the recipe states
    it the same way, so a selection written when the YAML still held it (2 for RTE) is still this recipe."""
    cfg = _compose(["experiment=table2", "task=rte", "method=sgd", f"results_dir={tmp_path}"])
    assert "num_labels" not in cfg.task and tl.recipe(cfg)["task.num_labels"] == 2
    _fake_tuning(tmp_path, "table2_tune", ["task=rte", "method=sgd"], best=0.01)
    path = tl.selection_path(tmp_path, "table2_tune", "rte", "sgd")
    sel = json.loads(path.read_text())
    assert sel["recipe"]["task.num_labels"] == 2
    assert OmegaConf.to_container(cfg, resolve=True)["optim"]["lr"] == 0.01
    path.write_text(json.dumps(sel | {"recipe": sel["recipe"] | {"task.num_labels": 3}}))
    with pytest.raises(Exception, match=r"task.num_labels: tuned 3, this run 2"):
        OmegaConf.to_container(
            _compose(["experiment=table2", "task=rte", "method=sgd", f"results_dir={tmp_path}"]), resolve=True
        )


def test_no_placeholder_lr_in_any_table_path(tmp_path):
    names = ["table1", "table2", "table3", "table4", "speedup", "cpu_scale", "cpu_scale_table2", "mnli_init"]
    for name in names:
        for r in _plan(name, ["task=rte", "seed=1", DATA, f"results_dir={tmp_path}"]):
            assert r.lr_source != "placeholder", (name, r.line)
            if r.optim in ("sgd", "sam"):
                assert r.lr_source == "tuned" and r.tuned_by == TUNED[name][0]


def test_plan_warns_about_a_placeholder_lr(tmp_path, capsys):
    rc, out, _ = _main(
        ["reproduce-all", "--dry-run", "--only", "smoke", "method=sgd", "seed=1", f"results_dir={tmp_path}"],
        capsys,
    )
    assert rc == 0
    assert (
        "warning: 2 runs use a placeholder lr (no recipe lr, not tuned): smoke rte/sgd (conf/untuned_lr/sgd.yaml)"
        in out
    )


def test_plan_estimates_disk_and_states_precision(tmp_path, capsys):
    rc, out, _ = _main(
        [
            "reproduce-all",
            "--dry-run",
            "--only",
            "table1,smoke",
            "task=rte",
            "seed=1",
            f"results_dir={tmp_path}",
        ],
        capsys,
    )
    assert rc == 0
    assert (
        "disk: save_model=best/final keeps one fp32 model per run for 6 of 6 runs: roberta-large 355.0M params = "
        "1.4 GB x 4 runs; tiny 48k params = 0.2 MB x 2 runs -> 5.7 GB in all (5.7 GB for the runs to do)"
        in out
    )
    assert (
        "precision: trainer.mixed_precision=fp16 (fp16) for table1; trainer.mixed_precision=no (fp32) for smoke; "
        "the paper trained in fp16" in out
    )


def test_only_table_adds_its_tuning_stage_first(tmp_path, capsys):
    rc, out, _ = _main(
        [
            "reproduce-all",
            "--dry-run",
            "--only",
            "cpu_scale_table2",
            "task=rte",
            "seed=1",
            DATA,
            f"results_dir={tmp_path}",
        ],
        capsys,
    )
    assert rc == 0
    runs = [line for line in out.splitlines() if line.startswith("run: ")]
    assert len(runs) == 8 + 3
    assert all(line.startswith("run: experiment=cpu_scale_tune ") for line in runs[:8])
    assert all(
        line.startswith("run: experiment=cpu_scale_table2 ")
        and line.endswith("# optim.lr: tuned by cpu_scale_tune (not selected yet)")
        for line in runs[8:]
    )
    assert "select: cpu_scale_tune ->" in out


# ------------------------------------------------------------------------------------ launchers
def test_slurm_launcher_without_sbatch_or_srun_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: None)
    rc, out, err = _main(["reproduce-all", "--launcher", "slurm", "--only", "smoke"], capsys)
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [
        "error: --launcher slurm submits SLURM jobs, but sbatch and srun are not on PATH: run it on a SLURM "
        "login node (or load the slurm module), or use --launcher local / submitit_local on this machine"
    ]
    rc, out, err = _main(["reproduce-all", "--dry-run", "--launcher", "slurm", "--only", "smoke"], capsys)
    assert (
        rc == 0 and "warning: --launcher slurm submits SLURM jobs" in err and "run: experiment=smoke" in out
    )
    monkeypatch.setattr(shutil, "which", lambda cmd, *a, **k: "/usr/bin/" + cmd if cmd == "srun" else None)
    rc, _, err = _main(["reproduce-all", "--launcher", "slurm", "--only", "smoke"], capsys)
    assert rc == 2 and "but sbatch is not on PATH" in err


def test_hydra_slurm_launcher_without_srun_stops_with_one_line(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    empty = tmp_path / "bin"
    empty.mkdir()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "adasam_glue",
            "-m",
            "experiment=smoke",
            "hydra/launcher=slurm",
            f"results_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env={**ENV, "PATH": str(empty)},
        timeout=300,
        cwd=CONF_DIR.parent,
    )
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert "error: hydra/launcher=slurm submits SLURM jobs, but sbatch and srun are not on PATH" in p.stderr
    assert "Traceback" not in p.stderr and "Could not detect" not in p.stderr


# --------------------------------------------------------------------------------------- bad input
def test_unknown_experiment_lists_the_valid_ones(capsys):
    rc, _, err = _main(["reproduce-all", "--dry-run", "--only", "nosuch"], capsys)
    assert rc == 2 and "nosuch" in err and "table1" in err and "speedup" in err


def test_unknown_experiment_through_hydra_lists_the_valid_ones():
    p = subprocess.run(
        [sys.executable, "-m", "adasam_glue", "experiment=nosuch"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert p.returncode != 0
    assert "Could not find 'experiment/nosuch'" in p.stderr and "table1" in p.stderr and "speedup" in p.stderr


def test_slurm_without_submitit_says_install_the_extra(capsys, monkeypatch):
    monkeypatch.setattr(launchers, "_importable", lambda module: False)
    rc, _, err = _main(["reproduce-all", "--dry-run", "--launcher", "slurm"], capsys)
    assert rc == 2 and "pip install -e '.[slurm]'" in err
    rc, _, err = _main(["reproduce-all", "--dry-run", "--launcher", "nosuch"], capsys)
    assert rc == 2 and "slurm" in err and "local" in err


def test_make_target_calls_the_cli():
    makefile = (CONF_DIR.parent / "Makefile").read_text()
    assert "-m adasam_glue.experiments reproduce-all --launcher $(LAUNCHER)" in makefile


# ------------------------------------------------------------------------------ end to end (tiny)
def _multirun(args, tmp_path, timeout=600):
    p = subprocess.run(
        [sys.executable, "-m", "adasam_glue", "-m", *args, f"results_dir={tmp_path}"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        cwd=CONF_DIR.parent,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def _records(root):
    return {
        str(p.parent.relative_to(root)): json.loads(p.read_text())
        for p in sorted(Path(root, "runs").rglob("record.json"))
    }


def test_smoke_multirun_completes_then_rerun_skips(tmp_path, capsys):
    _multirun(["experiment=smoke"], tmp_path)
    records = _records(tmp_path)
    assert len(records) == EXPECTED_RUNS["smoke"]
    assert all(k.startswith("runs/smoke/") for k in records)
    assert {r["status"] for r in records.values()} == {"completed"}
    mtimes = {p: p.stat().st_mtime_ns for p in Path(tmp_path, "runs").rglob("record.json")}
    # reproduce-all sees them done and does not even launch; a direct multirun skips each run.
    rc, out, _ = _main(["reproduce-all", "--only", "smoke", f"results_dir={tmp_path}"], capsys)
    assert rc == 0 and "4 done" in out and "skip: experiment=smoke" in out
    _multirun(["experiment=smoke"], tmp_path)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # completed records never rewritten


def test_preempted_run_resumes(tmp_path):
    from adasam_glue.run import run

    overrides = [
        "experiment=smoke",
        "task=rte",
        "method=adasam_rho0.01",
        "trainer.max_updates=4",
        f"results_dir={tmp_path}",
    ]
    first = run(_compose([*overrides, "trainer.stop_after_updates=2"]), overrides=overrides)
    assert first["status"] == "preempted" and first["optimizer_updates"] == 2
    second = run(_compose(overrides), overrides=overrides)
    assert second["status"] == "completed" and second["optimizer_updates"] == 4 and second.get("resumed")
    assert run(_compose(overrides), overrides=overrides).get("skipped")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,shrink",
    [
        ("table1", ["task=rte", "seed=1"]),
        ("table2", ["task=mrpc", "seed=1", "optim.lr=0.01"]),  # a given lr replaces the tuned one
        ("table3", ["task=stsb", "seed=1"]),
        ("table4", ["task=cola", "seed=1", "optim.lr=0.1"]),
        ("speedup", ["task=rte", "seed=1"]),
        ("variants", ["task=rte", "seed=1"]),
        (
            "schedules",
            [
                "task=rte",
                "seed=1",
                "optim=adasam",
                "sharpness.num_samples=8",
                "sharpness.batch_size=8",
                "sharpness.power_iters=2",
                "sharpness.trace_probes=1",
                "sharpness.ascent_steps=1",
                "data.synthetic_train_size=256",
            ],
        ),
        ("mnli_init", []),
    ],
)
def test_each_experiment_multiruns_with_the_tiny_model(name, shrink, tmp_path):
    _multirun([f"experiment={name}", *SHRINK, *shrink], tmp_path)
    records = _records(tmp_path)
    expected = len(_jobs(name, [*SHRINK, *shrink]))
    assert len(records) == expected and {r["status"] for r in records.values()} == {"completed"}


@pytest.mark.slow
def test_smoke_through_the_submitit_local_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    _multirun(["experiment=smoke", "hydra/launcher=submitit_local_test", "task=rte"], tmp_path)
    records = _records(tmp_path)
    assert len(records) == 2 and {r["status"] for r in records.values()} == {"completed"}


@pytest.mark.slow
def test_reproduce_all_own_mnli_end_to_end(tmp_path, capsys):
    rc, out, _ = _main(
        ["reproduce-all", "--own-mnli", "--only", "smoke", "task=rte", *SHRINK, f"results_dir={tmp_path}"],
        capsys,
    )
    assert rc == 0, out
    records = _records(tmp_path)
    mnli = [r for k, r in records.items() if k.startswith("runs/mnli_init/")]
    own = [r for k, r in records.items() if k.startswith("runs/smoke-own-mnli/rte/")]
    assert len(mnli) == 1 and len(own) == 2 and {r["status"] for r in records.values()} == {"completed"}
    assert all(
        r["config"]["task"]["init_from"] == str(Path(tmp_path, "runs", mnli[0]["run_id"])) for r in own
    )


@pytest.mark.slow
def test_reproduce_all_tunes_then_trains_the_table_with_the_selected_lr(tmp_path, capsys):
    rc, out, _ = _main(
        [
            "reproduce-all",
            "--only",
            "table2",
            "task=rte",
            "seed=1",
            "method=sgd",
            *SHRINK,
            f"results_dir={tmp_path}",
        ],
        capsys,
    )
    assert rc == 0, out
    sel = json.loads((tmp_path / "runs/table2_tune/rte/sgd/tuned_lr.json").read_text())
    assert "selected rte/sgd: lr=" in out and len(sel["points"]) == 4
    records = _records(tmp_path)
    tune = [r for k, r in records.items() if k.startswith("runs/table2_tune/")]
    table = [r for k, r in records.items() if k.startswith("runs/table2/")]
    assert len(tune) == 4 and len(table) == 1 and {r["status"] for r in records.values()} == {"completed"}
    assert table[0]["config"]["optim"]["lr"] == sel["lr"]


def test_select_lr_counts_a_never_trained_fp16_record_as_diverged(tmp_path, capsys):
    """Issue 24 A, the lr selection: the best lr's record says completed but skipped every update."""
    _fake_tuning(tmp_path, "table2_tune", ["task=rte", "method=sgd"], best=0.01, select=False)
    rec_path = next((tmp_path / "runs" / "table2_tune" / "rte" / "sgd").glob("*lr0.01_*/seed1/record.json"))
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps(rec | {"skipped_updates": 100, "optimizer_updates": 100}))
    rc, out, err = _main(
        ["select-lr", "table2_tune", "task=rte", "method=sgd", f"results_dir={tmp_path}"], capsys
    )
    assert rc == 0, err
    sel = json.loads((tmp_path / "runs/table2_tune/rte/sgd/tuned_lr.json").read_text())
    point = next(p for p in sel["points"] if p["lr"] == 0.01)
    assert point["status"] == "diverged" and point["metric"] is None
    assert "100 of 100 updates skipped" in point["seeds"][0]["note"]
    assert sel["lr"] != 0.01
