"""The experiment layer: every experiment composes and expands to the right grid, the DRY_RUN plan,
bad input, launcher configs, and (tiny model, a few updates) multiruns that complete, skip and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from adasam_glue import experiments as ex
from adasam_glue.config import CONF_DIR

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
}
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


def test_task_optim_specialisation_applies():
    cfg = _compose(["task=rte", "optim=sam"], hydra_cfg=True)
    assert cfg.hydra.runtime.choices.task_optim == "rte_sam" and cfg.optim.lr == 1e-3


def test_slurm_launcher_config():
    cfg = _compose(
        ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2"], hydra_cfg=True
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == 4 and launcher["nodes"] == 2  # one process per GPU
    assert launcher["max_num_timeout"] > 0 and launcher["additional_parameters"]["requeue"] is True
    assert any("SUBMITIT_PREEMPT_SIGNAL=USR1" in line for line in launcher["setup"])
    assert cfg.hydra.callbacks.slurm_distributed_env._target_ == "adasam_glue.experiments.SlurmDistributedEnv"
    local = _compose(["hydra/launcher=submitit_local_test"], hydra_cfg=True)
    assert local.hydra.launcher._target_.endswith("LocalLauncher")


def test_slurm_callback_is_a_noop_outside_submitit(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    ex.SlurmDistributedEnv().on_job_start(config=None)
    assert "RANK" not in os.environ


# -------------------------------------------------------------------------------------------- plan
def test_dry_run_plan_lines_and_summary(capsys, tmp_path):
    rc, out, _ = _main(
        ["reproduce-all", "--dry-run", "task=rte", "seed=1", f"results_dir={tmp_path}"], capsys
    )
    assert rc == 0
    runs = [line for line in out.splitlines() if line.startswith("run: ")]
    assert len(runs) == 4 + 3 + 4 + 3 + 4  # tables 1-4 + speedup (4 batch sizes) for one task and seed
    r = f"results_dir={tmp_path} seed=1"
    for line in [
        f"run: experiment=table1 task=rte optim=amsgrad optim.beta1=0.9 {r}",
        f"run: experiment=table1 task=rte optim=adasam optim.rho=0.001 optim.beta1=0.9 {r}",
        f"run: experiment=table2 task=rte optim=sgd optim.beta1=0.9 {r}",
        f"run: experiment=table2 task=rte optim=sam optim.rho=0.005 optim.beta1=0.9 {r}",
        f"run: experiment=table3 task=rte optim=adasam optim.rho=0.01 optim.beta1=0.0 {r}",
        f"run: experiment=table4 task=rte optim=sam optim.rho=0.01 optim.beta1=0.0 {r}",
        f"run: experiment=speedup task=rte optim=adasam optim.rho=0.01 optim.beta1=0.9 task.batch_size=4 "
        f"optim.lr=1e-05 {r}",
    ]:
        assert line in runs
    assert "summary: 18 runs, 0 done, 0 diverged, 18 to do" in out
    assert "GPU-hours" in out and "2 passes per update for the SAM family" in out
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
    names = ["table1", "table2", "table3", "table4", "speedup", "variants", "schedules", "mnli_init"]
    dirs = [r.run_dir for n in names for r in _plan(n, ["task=rte", f"results_dir={tmp_path}"])]
    assert len(dirs) == len(set(dirs)) == (4 + 3 + 4 + 3) * 3 + 4 * 3 + 7 * 3 + 2 * 4 * 3 + 1


@pytest.mark.slow
def test_full_plan_covers_the_paper(capsys, tmp_path):
    rc, out, _ = _main(
        ["reproduce-all", "--dry-run", "--only", ",".join(EXPECTED_RUNS), f"results_dir={tmp_path}"], capsys
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
    monkeypatch.setattr(ex, "_importable", lambda module: False)
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
        ("table2", ["task=mrpc", "seed=1"]),
        ("table3", ["task=stsb", "seed=1"]),
        ("table4", ["task=cola", "seed=1"]),
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
