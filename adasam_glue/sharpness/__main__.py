"""``python -m adasam_glue.sharpness RUN_DIR [key=value ...]``: the post-hoc sharpness CLI
(:func:`adasam_glue.sharpness.posthoc.main`).

Its own ``__main__`` module so that the command runs the measure's module once: as a ``__main__`` block
of the measure itself, ``-m`` ran it as ``__main__`` and the CLI imported it a second time
(``sharpness ⟲ sharpness_posthoc``, issue 23; ``tests/test_import_graph.py``).
"""

import sys

from adasam_glue.sharpness.posthoc import main

if __name__ == "__main__":
    sys.exit(main())
