"""GLUE data: loading (Hub / TSV / disk / synthetic, Hub schema), tokenization and DataLoaders.

Modules: ``glue_tsv`` (the original TSV formats and parser), ``load`` (``load_glue``,
``load_glue_with_quality``: the skipped-row counts too), ``synthetic``
(``make_synthetic_glue``), ``loaders`` (``tokenize_glue``, collator, sampler, ``build_dataloaders``).
"""

from adasam_glue.data.glue_tsv import SPLIT_FILES, TsvFormatError, parse_glue_tsv, read_glue_tsv
from adasam_glue.data.loaders import (
    GlueCollator,
    GlueDataLoader,
    GlueLoaders,
    GlueTrainSampler,
    build_dataloaders,
    build_train_loader,
    default_pad_multiple,
    pad_stats,
    sequence_lengths,
    subsample,
    tokenize_glue,
    tokenizer_fingerprint,
    train_order,
)
from adasam_glue.data.sources import (
    SOURCES,
    DataError,
    find_task_dir,
    hub_features,
    hub_splits,
    load_glue,
    load_glue_config,
    load_glue_with_quality,
)
from adasam_glue.data.synthetic import make_synthetic_glue

__all__ = [
    "SOURCES",
    "SPLIT_FILES",
    "TsvFormatError",
    "DataError",
    "GlueCollator",
    "GlueDataLoader",
    "GlueLoaders",
    "GlueTrainSampler",
    "build_dataloaders",
    "build_train_loader",
    "default_pad_multiple",
    "find_task_dir",
    "hub_features",
    "hub_splits",
    "load_glue",
    "load_glue_config",
    "load_glue_with_quality",
    "make_synthetic_glue",
    "pad_stats",
    "parse_glue_tsv",
    "read_glue_tsv",
    "sequence_lengths",
    "subsample",
    "tokenize_glue",
    "tokenizer_fingerprint",
    "train_order",
]
