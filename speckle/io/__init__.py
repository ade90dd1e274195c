"""Readers, validation and writers: data in and results out.

``open_dataset(path)`` opens any supported file by its content (not its extension) and returns
a lazily read, validated :class:`Dataset`.
"""

from .dataset import ArrayDataset, Dataset, Metadata

__all__ = ["ArrayDataset", "Dataset", "Metadata"]
