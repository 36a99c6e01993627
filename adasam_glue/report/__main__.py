"""``python -m adasam_glue.report RUNS_DIR OUT_DIR``: rebuild tables and figures from run records.

Exit codes: 0 written; 2 nothing to report (no records, unknown schema version, bad arguments).
"""

from __future__ import annotations

import argparse
import sys

from adasam_glue.records import RecordError
from adasam_glue.report import build_report
from adasam_glue.report.collect import NoRecordsError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser("python -m adasam_glue.report", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("runs_dir", help="folder searched recursively for record.json files")
    p.add_argument("out_dir", help="folder for tables, figures, claims.md and README.md")
    p.add_argument(
        "--skip-unknown-schema",
        action="store_true",
        help="list records of another schema version as skipped instead of refusing them",
    )
    p.add_argument("--no-figures", action="store_true", help="tables and claims only")
    args = p.parse_args(argv)
    try:
        kw = dict(skip_unknown_schema=args.skip_unknown_schema, figures=not args.no_figures)
        s = build_report(args.runs_dir, args.out_dir, **kw)
    except (NoRecordsError, RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for rel, why in s.collection.skipped:
        print(f"warning: skipped {rel}: {why}", file=sys.stderr)
    print(
        "\n".join([*s.lines, f"wrote {len(s.files)} files to {s.out_dir} (index: {s.out_dir / 'README.md'})"])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
