"""Readers, validation and writers: data in and results out.

``open_dataset(path)`` opens any supported file by its content (not its extension) and returns
a lazily read, validated :class:`Dataset`.
"""

from ..errors import DatasetNotFoundError
from .dataset import ArrayDataset, Dataset, Metadata
from .open import open_dataset
from .sniff import sniff_format

__all__ = ["ArrayDataset", "Dataset", "DatasetNotFoundError", "Metadata", "open_dataset",
           "sniff_format"]
