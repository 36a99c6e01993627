"""``python -m adasam_glue.bench <command>``: see :mod:`adasam_glue.bench.cli`."""

from adasam_glue.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
