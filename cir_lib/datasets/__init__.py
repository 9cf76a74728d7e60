"""The benchmarks, by name: `get_dataset("fashioniq")`, `get_dataset("cirr")`.

Each is a `cir_lib.datasets.base.Dataset`; what varies from one benchmark to the next lives there.
A new benchmark: its module beside these, one `register_dataset` line below, and its test (the
contract test in tests/test_datasets.py runs every registered dataset).

Example:
    >>> from cir_lib.datasets import get_dataset, dataset_names
    >>> dataset_names()
    ('fashioniq', 'cirr')
    >>> get_dataset("shoes")
    Traceback (most recent call last):
    cir_lib.errors.ConfigError: unknown dataset 'shoes'; valid: fashioniq, cirr
"""

from __future__ import annotations

from cir_lib.datasets.base import Dataset
from cir_lib.datasets.cirr import CIRR_DATASET
from cir_lib.datasets.fashioniq import FASHIONIQ
from cir_lib.errors import ConfigError

_REGISTRY: dict = {}


def register_dataset(dataset: Dataset) -> Dataset:
    """Register a dataset under its name (refused when the name is taken)."""
    if dataset.name in _REGISTRY:
        raise ConfigError(f"dataset {dataset.name!r} is already registered")
    _REGISTRY[dataset.name] = dataset
    return dataset


def get_dataset(name) -> Dataset:
    """The registered dataset `name` (a Dataset is returned as it is).

    Raises:
        ConfigError: an unknown name, with the list of known ones.
    """
    if isinstance(name, Dataset):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown dataset {name!r}; valid: {', '.join(_REGISTRY)}") from None


def dataset_names() -> tuple:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)


register_dataset(FASHIONIQ)
register_dataset(CIRR_DATASET)
# The command line offers `constants.DATASETS` without importing this package (its start-up stays light);
# tests/test_datasets.py checks that it lists the registered datasets.
