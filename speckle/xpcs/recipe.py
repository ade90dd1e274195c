"""An XPCS analysis as a recipe: which pixels, which acquisition values, which options.

A :class:`XpcsRecipe` is what a person chose for an analysis, independent of any one file: the
partition as a description (:class:`PartitionSpec`: q-rings, rectangles, an APS q-map file or
automatic), the acquisition values that override the file's (frame time, geometry), and the
:class:`~speckle.xpcs.analysis.XpcsOptions`. ``recipe.run(path)`` opens a file and analyses
it. The command line builds a recipe from its arguments, a dashboard from its widgets, and the
beamtime monitor reads one from a template file; so the same choices give the same result
whoever runs them.

:meth:`XpcsRecipe.to_dict` writes plain values with units a person reads (``"1.3ms"``,
``"0.006/A"``); :meth:`XpcsRecipe.from_dict` reads them (or plain SI numbers) back and refuses
unknown keys by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError
from ..units import format_quantity, parse_frames, parse_pair, parse_quantity
from .analysis import XpcsOptions
from .partitions import Partition

__all__ = ["PARTITION_KINDS", "PartitionSpec", "XpcsRecipe"]

#: How a :class:`PartitionSpec` chooses pixels.
PARTITION_KINDS = ("auto", "whole", "rois", "q_rings", "qmap")

#: Acquisition values a recipe may set, with the kind of quantity each is.
METADATA_KINDS = {"frame_time": "time", "energy": "energy", "distance": "length",
                  "pixel_size": "length", "beam_center": None}


def _unknown(keys, known, where: str) -> None:
    extra = sorted(set(keys) - set(known))
    if extra:
        raise InvalidInputError(f"{where}: unknown key {extra[0]!r}; known: {', '.join(sorted(known))}")


@dataclass(frozen=True)
class PartitionSpec:
    """Which pixels an XPCS analysis correlates, described independently of a file.

    Attributes
    ----------
    kind : {"auto", "whole", "rois", "q_rings", "qmap"}
        ``auto``: q-rings when the geometry is known (from the file or the recipe), else the
        whole detector; ``whole``: the whole detector as one region; ``rois``: the rectangles
        in :attr:`rois`; ``q_rings``: :attr:`n_rings` rings from :attr:`q_min` with
        :attr:`q_width` (spread over the detector when those are None); ``qmap``: the APS q-map
        file :attr:`qmap`.
    rois : tuple of (int, int, int, int)
        Rectangles ``(row0, row1, col0, col1)``, half-open, 0-based pixels.
    qmap : str or None
        Path of an APS q-map file (``/qmap/dynamic_roi_map``...).
    n_rings : int
        Number of q-rings.
    q_min, q_width, q_step : float or None
        Lower edge of the first ring, ring width and distance between ring starts, 1/m.
    static_per_ring : int
        Static bins per ring for the normalisation.
    """

    kind: str = "auto"
    rois: tuple = ()
    qmap: str | None = None
    n_rings: int = 8
    q_min: float | None = None
    q_width: float | None = None
    q_step: float | None = None
    static_per_ring: int = 5

    def __post_init__(self):
        if self.kind not in PARTITION_KINDS:
            raise InvalidInputError(f"partition kind must be one of {', '.join(PARTITION_KINDS)}, "
                                    f"not {self.kind!r}")
        rois = tuple(tuple(int(v) for v in r) for r in self.rois)
        if any(len(r) != 4 for r in rois):
            raise InvalidInputError("a region is four numbers: row0, row1, col0, col1")
        object.__setattr__(self, "rois", rois)
        if self.kind == "rois" and not rois:
            raise InvalidInputError("partition kind 'rois' needs at least one region")
        if self.kind == "qmap" and not self.qmap:
            raise InvalidInputError("partition kind 'qmap' needs the q-map file (qmap: PATH)")
        if (self.q_min is None) != (self.q_width is None):
            raise InvalidInputError("give both q_min and q_width (or neither)")
        if int(self.n_rings) < 1 or int(self.static_per_ring) < 1:
            raise InvalidInputError("n_rings and static_per_ring must be at least 1")

    def build(self, frame_shape: tuple[int, int], metadata) -> Partition:
        """The partition for frames of ``frame_shape`` with acquisition ``metadata``.

        Raises
        ------
        InvalidInputError
            When q-rings need geometry the metadata lacks, or a region or q-map does not fit.
        """
        from .geometry import Geometry
        from .partitions import q_rings, read_aps_qmap, rectangles

        shape = tuple(int(v) for v in frame_shape)
        if self.kind == "qmap":
            part = read_aps_qmap(self.qmap)
            if part.shape != shape:
                raise InvalidInputError(f"the q-map {self.qmap} is {part.shape[0]}×{part.shape[1]} "
                                        f"pixels but the frames are {shape[0]}×{shape[1]}")
            return part
        if self.kind == "rois":
            return rectangles(shape, list(self.rois))
        geometry_known = all(getattr(metadata, k) is not None
                             for k in ("energy", "distance", "pixel_size", "beam_center"))
        if self.kind == "whole" or (self.kind == "auto" and not geometry_known):
            return rectangles(shape, [(0, shape[0], 0, shape[1])])
        geometry = Geometry.from_metadata(metadata)
        q_min, q_width, q_step = self.q_min, self.q_width, self.q_step
        if q_min is None:
            q_lo, q_hi = np.percentile(geometry.q_map(shape), [2, 90])
            q_min, q_width, q_step = float(q_lo), float(q_hi - q_lo) / self.n_rings, None
        return q_rings(shape, geometry, q_min=q_min, q_width=q_width, q_step=q_step,
                       n_rings=int(self.n_rings), static_per_dynamic=int(self.static_per_ring))

    def to_dict(self) -> dict:
        """Plain values (q with its unit), only those that mean something for :attr:`kind`."""
        out: dict = {"kind": self.kind}
        if self.kind == "rois":
            out["rois"] = [list(r) for r in self.rois]
        elif self.kind == "qmap":
            out["qmap"] = self.qmap
        elif self.kind in ("q_rings", "auto"):
            out["n_rings"] = int(self.n_rings)
            for name in ("q_min", "q_width", "q_step"):
                value = getattr(self, name)
                if value is not None:
                    out[name] = format_quantity(value, "q")
            out["static_per_ring"] = int(self.static_per_ring)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> "PartitionSpec":
        """Read :meth:`to_dict`'s form; q values may carry units (``"0.006/A"``) or be 1/Å."""
        if not isinstance(d, Mapping):
            raise InvalidInputError("partition: expected a mapping (kind: q_rings, ...)")
        names = {f.name for f in dataclasses.fields(cls)}
        _unknown(d, names, "partition")
        values = dict(d)
        for name in ("q_min", "q_width", "q_step"):
            if values.get(name) is not None:
                values[name] = parse_quantity(values[name], "q")
        if "rois" in values:
            values["rois"] = tuple(tuple(r) for r in values["rois"] or ())
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(f"partition: {exc}") from None


@dataclass(frozen=True)
class XpcsRecipe:
    """Everything an XPCS analysis needs besides the frames.

    Attributes
    ----------
    partition : PartitionSpec
    metadata : dict
        Acquisition values that override the file's, SI units: ``frame_time``, ``energy``,
        ``distance``, ``pixel_size`` (row, col), ``beam_center`` (row, col, pixels).
    options : XpcsOptions
    dataset : str or None
        Which array inside a container file (default: the reader's choice).
    """

    partition: PartitionSpec = field(default_factory=PartitionSpec)
    metadata: dict = field(default_factory=dict)
    options: XpcsOptions = field(default_factory=XpcsOptions)
    dataset: str | None = None

    def __post_init__(self):
        _unknown(self.metadata, METADATA_KINDS, "metadata")
        clean = {}
        for key, value in self.metadata.items():
            if value is None:
                continue
            kind = METADATA_KINDS[key]
            if key in ("pixel_size", "beam_center"):
                clean[key] = parse_pair(value, kind)
            else:
                clean[key] = parse_quantity(value, kind)
        object.__setattr__(self, "metadata", clean)

    # ---------------------------------------------------------------- running
    def open(self, path):
        """Open ``path`` with this recipe's dataset choice and metadata overrides."""
        from ..io.open import open_dataset

        return open_dataset(path, dataset=self.dataset, metadata=self.metadata or None)

    def run(self, source, *, progress: Callable | None = None, cancel: Callable | None = None):
        """Analyse a file (or an open dataset) with this recipe.

        Parameters
        ----------
        source : path-like or Dataset
            A path is opened with :meth:`open` and closed afterwards; an open dataset is seen
            with the recipe's metadata overrides (:meth:`Dataset.with_metadata`), unchanged.
        progress, cancel : callable, optional
            As :func:`speckle.xpcs.analysis.analyze` takes them.

        Returns
        -------
        XpcsResult
        """
        from ..io.dataset import Dataset
        from .analysis import analyze

        if isinstance(source, Dataset):
            view = source.with_metadata(**self.metadata)
            partition = self.partition.build(view.frame_shape, view.metadata)
            return analyze(view, partition, self.options, progress=progress, cancel=cancel)
        with self.open(source) as ds:
            partition = self.partition.build(ds.frame_shape, ds.metadata)
            return analyze(ds, partition, self.options, progress=progress, cancel=cancel)

    # ---------------------------------------------------------------- plain values
    def to_dict(self) -> dict:
        """Plain, YAML-friendly values with units; :meth:`from_dict` reads them back."""
        md = {}
        for key, value in self.metadata.items():
            kind = METADATA_KINDS[key]
            if key == "beam_center":
                md[key] = [float(v) for v in value]
            elif key == "pixel_size":
                md[key] = [format_quantity(v, kind) for v in value]
            else:
                md[key] = format_quantity(value, kind)
        defaults = XpcsOptions()
        options = {}
        for f in dataclasses.fields(XpcsOptions):
            value = getattr(self.options, f.name)
            if value != getattr(defaults, f.name):
                options[f.name] = list(value) if isinstance(value, tuple) else value
        out = {"partition": self.partition.to_dict(), "metadata": md, "options": options}
        if self.dataset is not None:
            out["dataset"] = self.dataset
        return out

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "XpcsRecipe":
        """Read :meth:`to_dict`'s form (every key optional); unknown keys are refused by name."""
        d = {} if d is None else d
        if not isinstance(d, Mapping):
            raise InvalidInputError("xpcs: expected a mapping (partition:, metadata:, options:)")
        _unknown(d, ("partition", "metadata", "options", "dataset"), "xpcs")
        options = dict(d.get("options") or {})
        _unknown(options, {f.name for f in dataclasses.fields(XpcsOptions)}, "xpcs options")
        if "exclude_frames" in options:
            options["exclude_frames"] = tuple(parse_frames(options["exclude_frames"]))
        try:
            opts = XpcsOptions(**options)
        except TypeError as exc:
            raise InvalidInputError(f"xpcs options: {exc}") from None
        metadata = d.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise InvalidInputError("xpcs metadata: expected a mapping (frame_time: 1ms, ...)")
        dataset = d.get("dataset")
        return cls(partition=PartitionSpec.from_dict(d.get("partition") or {}),
                   metadata=dict(metadata), options=opts,
                   dataset=None if dataset is None else str(dataset))
