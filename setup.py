"""What ``pyproject.toml`` cannot say: the wheel ships the top-level ``conf/`` as ``adasam_glue/conf``.

``conf/`` stays the one copy of the configs in the source tree (top-level, where Hydra users look for
it); a wheel has no source tree, so setuptools maps the package ``adasam_glue.conf`` (and its config
groups, listed so setuptools knows they are data folders, not forgotten packages) onto ``conf/`` and
ships the YAML and the architecture files under ``conf/model/architectures`` as package data.
``adasam_glue.config.CONF_DIR`` finds whichever of the two layouts is installed. The rest is in pyproject.toml.
"""

from setuptools import find_namespace_packages, find_packages, setup

CONF = ["adasam_glue.conf", *(f"adasam_glue.conf.{p}" for p in find_namespace_packages(where="conf"))]

setup(
    packages=[*find_packages(include=["adasam_glue", "adasam_glue.*"]), *CONF],
    package_dir={"adasam_glue.conf": "conf"},
    package_data={"adasam_glue.conf": ["**/*.yaml", "model/architectures/**/*"]},
)
