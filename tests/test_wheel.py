"""A non-editable install works: the wheel built from this tree ships the configs and every command runs
from outside the source tree.

The wheel is built from a copy of the tree and installed into a fresh venv that sees this environment's
dependencies (torch, transformers, hydra ...) through a ``.pth`` line, but not its editable install of
adasam_glue: a ``.pth`` file only adds paths, so the editable finder that the other site-packages' own
``.pth`` files install never runs there. Every command then runs in an empty folder with that venv's
Python, so nothing can come from the checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: what a wheel is built from (what an sdist holds): the package, the configs, the packaging files
SOURCES = ("adasam_glue", "conf", "setup.py", "pyproject.toml", "README.md")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The venv's python, with the wheel of this tree installed (no editable path to the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                           check=True, capture_output=True, text=True, timeout=300)  # fmt: skip
    # the backend's deprecations are dated breaks (the TOML-table `project.license` stops building in 2027)
    assert "Warning" not in build.stderr, f"the wheel builds with warnings:\n{build.stderr[-3000:]}"
    (wheel,) = (tmp / "dist").glob("adasam_glue-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "_test_deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)  # fmt: skip
    return python


def _run(python: Path, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, (
        f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out


@pytest.fixture
def outside(tmp_path) -> Path:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return cwd


def test_the_wheel_is_what_runs_and_ships_the_configs(installed, outside):
    out = _run(
        installed,
        outside,
        "-c",
        "import adasam_glue, adasam_glue.config as c; print(adasam_glue.__file__); print(c.CONF_DIR)",
    )
    module, conf = (Path(line).resolve() for line in out.stdout.split())
    venv = installed.parent.parent.resolve()
    assert module.is_relative_to(venv) and conf.is_relative_to(venv), (module, conf)
    assert conf == module.parent / "conf"
    shipped = {p.relative_to(conf).as_posix() for p in conf.rglob("*") if p.is_file()}
    in_tree = {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*") if p.is_file()}
    assert shipped == in_tree, f"missing from the wheel: {sorted(in_tree - shipped)}"


def test_compose_help_and_a_user_config_dir_from_the_wheel(installed, outside):
    out = _run(installed, outside, "-m", "adasam_glue", "task=mrpc", "optim=adasam", "--cfg", "job")
    assert "name: adasam" in out.stdout and "name: mrpc" in out.stdout and "rho: 0.01" in out.stdout

    help_text = _run(installed, outside, "-m", "adasam_glue", "--help").stdout
    groups = help_text.split("groups (group=option):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    options = {line.split()[0]: line.split()[1:] for line in groups}
    assert set(options) >= {"task", "optim", "model", "experiment"}
    assert all(options.values()), f"--help shows an empty group: {options}"
    assert "mrpc" in options["task"] and "adasam" in options["optim"]

    # A user's own option next to the shipped ones (--config-dir adds a search path entry).
    mine = outside / "myconf" / "optim"
    mine.mkdir(parents=True)
    (mine / "adasam_big_rho.yaml").write_text("defaults:\n  - adasam\n  - _self_\nrho: 0.05\n")
    out = _run(
        installed,
        outside,
        "-m",
        "adasam_glue",
        "optim=adasam_big_rho",
        "--config-dir",
        str(outside / "myconf"),
        "--cfg",
        "job",
    )
    assert "rho: 0.05" in out.stdout and "name: adasam" in out.stdout


def test_experiments_dry_run_a_tiny_run_and_the_report_from_the_wheel(installed, outside):
    out = _run(
        installed,
        outside,
        "-m",
        "adasam_glue.experiments.plan",
        "reproduce-all",
        "--dry-run",
        "--only",
        "smoke,cpu_scale_table2",
    )
    assert "run: experiment=smoke" in out.stdout and "select-lr cpu_scale_tune" in out.stdout

    tiny = ["model=tiny", "data.source=synthetic", "data.synthetic_train_size=32", "data.synthetic_eval_size=16",
            "task.max_length=16", "task.batch_size=8", "trainer.max_updates=2", "trainer.cpu=true",
            "trainer.progress_bar=false", "results_dir=results", "run_dir=results/runs/wheel/r"]  # fmt: skip
    _run(installed, outside, "-m", "adasam_glue", "task=mrpc", "optim=amsgrad", *tiny)
    assert '"status": "completed"' in (outside / "results/runs/wheel/r/record.json").read_text()

    shutil.copytree(ROOT / "results" / "demo" / "runs", outside / "records")
    _run(installed, outside, "-m", "adasam_glue.report", "records", "report")
    written = {p.name for p in (outside / "report").rglob("*") if p.is_file()}
    assert {"README.md", "table1.md", "table1.csv"} <= written, written
