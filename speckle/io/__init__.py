"""Readers, validation and writers: data in and results out.

``open_dataset(path)`` opens any supported file by its content (not its extension) and returns
a lazily read, validated :class:`Dataset`.
"""

from ..errors import DatasetNotFoundError
from .dataset import ArrayDataset, Dataset, Metadata
from .aps_result import read_aps_result_g2, write_aps_result
from .open import open_dataset
from .sniff import sniff_format
from .tables import write_fits_csv, write_g2_csv

__all__ = ["ArrayDataset", "Dataset", "DatasetNotFoundError", "Metadata", "open_dataset",
           "read_aps_result_g2", "sniff_format", "write_aps_result", "write_fits_csv",
           "write_g2_csv"]
