"""Where the configs Hydra composes live: ``CONF_DIR``, in a wheel install or a source checkout.

Its own module, below every other (it imports nothing of the package), so that the layers that read a
file under ``conf/`` (the model's architecture folders, the optimizer registry's ``conf/optim/*.yaml``)
need not import :mod:`adasam_glue.config`, whose checks import them in turn (issue 23: no import cycle;
``tests/test_import_graph.py``). :mod:`adasam_glue.config` re-exports ``CONF_DIR``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONF_DIR"]


def _conf_dir() -> Path:
    """The configs Hydra composes: ``adasam_glue/conf`` in a wheel install (setup.py ships the top-level
    ``conf/`` there), else the source tree's top-level ``conf/`` (a checkout, ``pip install -e``).

    The packaged copy is looked up first so an installed package never reads a ``conf/`` that merely
    happens to sit next to its site-packages. A user's own configs are added on the command line
    (``--config-dir``, ``hydra.searchpath``) or replace these (``--config-path``); see README.md."""
    from importlib.resources import files

    packaged = Path(str(files("adasam_glue") / "conf"))
    source = Path(__file__).resolve().parent.parent / "conf"
    for candidate in (packaged, source):
        if (candidate / "config.yaml").is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"adasam_glue's configs are missing: neither {packaged} (wheel install) nor {source} (source tree) "
        "holds config.yaml. Reinstall the package (pip install adasam_glue-*.whl, or pip install -e . in a checkout)"
    )


#: The project's ``conf/`` folder, in a wheel install or a source checkout (:func:`_conf_dir`).
CONF_DIR = _conf_dir()
