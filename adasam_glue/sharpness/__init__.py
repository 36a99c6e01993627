"""Sharpness of the training loss at a run's weights (spec: docs/algorithms.md §3.5).

- :mod:`adasam_glue.sharpness.measure`: the measures (Hessian eigenvalues, trace, worst case) and the
  trainer's hook;
- :mod:`adasam_glue.sharpness.posthoc`: ``python -m adasam_glue.sharpness RUN_DIR`` on a finished run;
- :mod:`adasam_glue.sharpness.block`: the record's block, its method version and readers (torch-free).
"""
