"""wandb logging: a real offline run holds the run's config and eval metrics, a resumed run continues the
same wandb run, and a wandb failure never ends a training run (the record says what failed)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from adasam_glue.run import WANDB_ID_FILE, run

wandb = pytest.importorskip("wandb")


def _wandb_records(path: Path) -> list[Any]:
    """The protobuf records of an offline run's ``.wandb`` file, decoded with wandb's own ``Record`` message.

    wandb 0.31 ships no Python reader (its Go core writes the file), so this reads the container:
    a 7-byte ``:W&B`` header, then LevelDB-log blocks of 32 KiB whose chunks (4-byte CRC, 2-byte length,
    1-byte type: 1 full, 2 first, 3 middle, 4 last) carry one serialized ``Record`` each."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb datastore (header {data[:7]!r})"
    block, pos, buf, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # too little room for a chunk header: the writer padded to the next block
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


def _offline_run(run_dir: Path) -> dict[str, Any]:
    """``{"id", "config", "history"}`` of one ``offline-run-*`` folder, read from its ``.wandb`` file."""
    (path,) = run_dir.glob("run-*.wandb")
    info: dict[str, Any] = {"config": {}, "history": []}
    for r in _wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info["id"] = r.run.run_id
            info["config"] |= {u.key: json.loads(u.value_json) for u in r.run.config.update}
        elif kind == "config":
            info["config"] |= {u.key: json.loads(u.value_json) for u in r.config.update}
        elif kind == "history":
            info["history"].append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            )
    return info


def test_offline_run_holds_config_and_eval_metrics_and_a_resume_keeps_its_id(tiny_cfg, tmp_path, monkeypatch):
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    common = ("optim=amsgrad", "trainer.eval_every=2")
    run_dir = tmp_path / "r"

    first = run(tiny_cfg(*common, "trainer.stop_after_updates=2", run_dir=run_dir))
    assert first["status"] == "preempted"
    second = run(tiny_cfg(*common, run_dir=run_dir))
    assert second["status"] == "completed" and second["resumed"] is True
    assert not any("wandb_error" in a for a in second["attempts"]), second["attempts"]

    offline = sorted((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2, f"one offline run per attempt, got {offline}"
    runs = [_offline_run(d) for d in offline]
    run_id = (run_dir / WANDB_ID_FILE).read_text().strip()
    assert [r["id"] for r in runs] == [run_id, run_id], "the resumed attempt must continue the same wandb run"

    config = runs[-1]["config"]
    assert config["task"]["name"] == "mrpc" and config["optim"]["name"] == "amsgrad"
    assert config["trainer"]["max_updates"] == 4 and config["model"]["name"] == "tiny"

    logged = {k: v for r in runs for h in r["history"] for k, v in h.items() if k.startswith("eval/")}
    final = second["final"]["metrics"]
    assert logged, f"no eval metrics in the offline runs: {[r['history'] for r in runs]}"
    for key, value in final.items():
        assert logged[f"eval/{key}"] == pytest.approx(value), key
    steps = [h["_step"] for r in runs for h in r["history"] if any(k.startswith("train/") for k in h)]
    assert steps == [1, 2, 3, 4], "the resumed attempt logs the updates after the checkpoint, once each"


class _FakeRun:
    def __init__(self, fail: str) -> None:
        self.fail, self.logged, self.finished = fail, [], False

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.fail == "log":
            raise ConnectionError("wandb backend went away")
        self.logged.append(step)

    def finish(self) -> None:
        if self.fail == "finish":
            raise RuntimeError("wandb-core exited")
        self.finished = True


@pytest.mark.parametrize("fail", ["init", "log", "finish"])
def test_a_wandb_failure_leaves_the_run_completed_and_is_recorded(
    fail, tiny_cfg, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    fake = _FakeRun(fail)

    def init(**kwargs: Any) -> _FakeRun:
        if fail == "init":
            raise wandb.errors.CommError("could not reach the wandb server")
        return fake

    monkeypatch.setattr(wandb, "init", init)
    rec = run(tiny_cfg("optim=amsgrad", run_dir=tmp_path / "r"))

    assert rec["status"] == "completed" and rec["optimizer_updates"] == 4
    on_disk = json.loads((tmp_path / "r" / "record.json").read_text())
    assert on_disk["status"] == "completed"
    error = on_disk["attempts"][-1].get("wandb_error", "")
    assert error.startswith(f"wandb.{fail} failed"), on_disk["attempts"][-1]
    assert any("goes on without wandb" in r.getMessage() for r in caplog.records)
    if fail == "log":
        assert fake.logged == [] and not fake.finished  # dropped after the first failure
    if fail == "finish":
        assert fake.logged  # logging worked until the end
