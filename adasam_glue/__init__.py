"""adasam_glue: GLUE fine-tuning harness for sharpness-aware optimizers (AdaSAM, SAM and variants).

Spec: the AdaSAM paper (arXiv 2303.00565) and ``docs/algorithms.md`` of the project (sections cited
in each module). Entry point: ``python -m adasam_glue task=mrpc optim=adasam``; the work is done by
:func:`adasam_glue.run.run`, which tests call directly.
"""

__version__ = "0.1.0"
