"""Readers, validation and writers: data in and results out.

``open_dataset(path)`` opens any supported file by its content (not its extension) and returns
a lazily read, validated :class:`Dataset`. Writers live in their own modules
(:mod:`speckle.io.aps_result`, :mod:`speckle.io.tables`), which depend on the XPCS result types.
"""

from ..errors import DatasetNotFoundError
from .dataset import ArrayDataset, Dataset, Metadata
from .open import open_dataset
from .sniff import sniff_format

__all__ = ["ArrayDataset", "Dataset", "DatasetNotFoundError", "Metadata", "open_dataset",
           "sniff_format"]
