"""The campaign layer: what to run and in which order, above the single run (``adasam_glue.run``).

- :mod:`.plan`: the experiments' plans (``PlannedRun``, ``Block``), ``reproduce-all`` and ``select-lr``
  (``python -m adasam_glue.experiments``; docs/experiments.md).
- :mod:`.plan_text`: the dry run's plan as text (cost, disk, lr sources).
- :mod:`.launchers`: local / SLURM / submitit launches of a multirun (``--print-sbatch``).
- :mod:`.tuned_lr`: the lr-tuning stage's selections and the ``${tuned_lr:...}`` resolver.
- :mod:`.resolvers`: the experiments' other resolvers (``${sqrt_scale}``, ``${task_recipe}``).
- :mod:`.conf`: reading an experiment's YAML (its sweep, its rho grid).

Nothing here is imported by the run itself except the resolvers the YAML needs; importing this package
imports none of its modules.
"""
