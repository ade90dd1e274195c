"""Analysis templates: how the monitor analyses the files of a folder, as a small YAML file.

A template holds what a dashboard run used, for each kind of data the monitor recognises::

    # speckle analysis template
    folder: /data/beamtime42/sample3    # the folder it is for (per-folder templates only)
    kind: auto                          # auto (recognised from the content) | xpcs | fth | cdi
    xpcs:                               # an XpcsRecipe (speckle.xpcs.recipe)
      partition: {kind: q_rings, n_rings: 8, q_min: 0.006/A, q_width: 0.003/A}
      metadata: {frame_time: 1.3ms}
      options: {fit_model: single, twotime: true}
    fth: {apodization: 0.1}             # FthOptions (speckle.imaging.workflow)
    cdi: {}                             # CdiOptions (speckle.imaging.workflow)
    refocus: {energy: 778eV, pixel_size: 20nm, distances: [-5um, 5um, 101]}
                                        # RefocusOptions: FTH/CDI reconstructions refocused
    saved_by: alice
    saved_at: '2026-12-06T17:02:11+00:00'

Every key is optional; what is left out takes the library's defaults, except CDI's random
starts, which the monitor seeds (``seed: 0`` unless the template sets one) so that a file is
reconstructed and judged the same every time it is analysed. Quantities may carry
units (``1.3ms``, ``0.006/A``, ``778eV``, ``20nm``). An unknown key or a wrong value is refused
with a message naming it.

Per-folder templates live in ``<results>/templates/`` (:class:`TemplateStore`); the template
of a file is the one whose folder is the nearest above it, else the monitor's default.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInputError
from ..io.atomic import atomic_path
from ..xpcs.recipe import XpcsRecipe

__all__ = ["KINDS", "Template", "TemplateStore", "load_template", "save_template"]

#: What ``kind`` may say.
KINDS = ("auto", "xpcs", "fth", "cdi")
_KEYS = ("kind", "xpcs", "fth", "cdi", "refocus", "folder", "saved_by", "saved_at", "note")
#: Options classes of the imaging workflow, by template section.
_IMAGING = {"fth": "FthOptions", "cdi": "CdiOptions", "refocus": "RefocusOptions"}
#: The CDI trials' seed when a template names none (reproducible reprocessing).
MONITOR_CDI_SEED = 0
#: Largest template file read (a template is a few hundred bytes).
MAX_TEMPLATE_BYTES = 256 * 1024


def _imaging_options(kind: str, values: Mapping):
    """The FthOptions, CdiOptions or RefocusOptions that ``values`` describe (refused by name
    when wrong). Lengths and energies of ``refocus`` may carry units (``20nm``, ``778eV``)."""
    from ..imaging import workflow

    cls = getattr(workflow, _IMAGING[kind])
    if not isinstance(values, Mapping):
        raise InvalidInputError(f"{kind}: expected a mapping of options")
    values = dict(values)
    if kind == "refocus":
        values = _refocus_units(values)
    try:
        return cls.from_dict(values)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{kind}: {exc}") from None


def _refocus_text(values: dict) -> dict:
    """Refocus quantities (SI) written with the units a person reads: the inverse of
    :func:`_refocus_units`."""
    from ..units import format_quantity

    def length(v):
        if v is None or v == 0:
            return v if v is None else "0m"
        return ("-" if v < 0 else "") + format_quantity(abs(v), "length")

    out = dict(values)
    if out.get("energy") is not None:
        out["energy"] = format_quantity(out["energy"], "energy")
    px = out.get("pixel_size")
    if isinstance(px, (list, tuple)):
        out["pixel_size"] = [length(v) for v in px]
    elif px is not None:
        out["pixel_size"] = length(px)
    d = out.get("distances")
    if isinstance(d, (list, tuple)) and len(d) == 3:
        out["distances"] = [length(d[0]), length(d[1]), int(d[2])]
    if out.get("distance_list"):
        out["distance_list"] = [length(v) for v in out["distance_list"]]
    return out


def _refocus_units(values: dict) -> dict:
    """Refocus quantities written with units (``778eV``, ``20nm``, ``-5um``) in SI."""
    from ..units import NUMBER_WITH_UNIT, parse_quantity

    def length(v):  # a signed length: parse_quantity takes positive ones
        if not isinstance(v, str):
            return v
        text = v.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        text = text.lstrip("+-")
        m = NUMBER_WITH_UNIT.fullmatch(text)
        if m and float(m.group(1)) == 0:
            return 0.0
        return sign * parse_quantity(text, "length")

    if isinstance(values.get("energy"), str):
        values["energy"] = parse_quantity(values["energy"], "energy")
    px = values.get("pixel_size")
    if isinstance(px, (list, tuple)):
        values["pixel_size"] = tuple(length(v) for v in px)
    elif px is not None:
        values["pixel_size"] = length(px)
    d = values.get("distances")
    if isinstance(d, (list, tuple)) and len(d) == 3:
        values["distances"] = (length(d[0]), length(d[1]), d[2])
    if isinstance(values.get("distance_list"), (list, tuple)):
        values["distance_list"] = tuple(length(v) for v in values["distance_list"])
    return values


@dataclass(frozen=True)
class Template:
    """How to analyse a folder's files (see the module docstring).

    Attributes
    ----------
    kind : {"auto", "xpcs", "fth", "cdi"}
        ``auto`` recognises each file's kind from its content.
    xpcs : XpcsRecipe
    fth, cdi : dict
        Options of the FTH and CDI workflows, as plain values (checked when the template is
        made).
    refocus : dict
        Options of the refocusing of FTH and CDI reconstructions (energy, pixel size, distance
        range, region, metric); empty: no refocusing.
    folder : str or None
        The folder a per-folder template is for (absolute).
    saved_by, saved_at, note : str or None
        Who saved it, when (ISO 8601), and a free note.
    """

    kind: str = "auto"
    xpcs: XpcsRecipe = field(default_factory=XpcsRecipe)
    fth: dict = field(default_factory=dict)
    cdi: dict = field(default_factory=dict)
    refocus: dict = field(default_factory=dict)
    folder: str | None = None
    saved_by: str | None = None
    saved_at: str | None = None
    note: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        for kind in ("fth", "cdi", "refocus"):
            values = getattr(self, kind) or {}
            if values:
                # normalise through the options class: checked now, written in its own words
                values = _imaging_options(kind, values).to_dict()
            object.__setattr__(self, kind, dict(values))
        if self.folder is not None:
            folder = Path(self.folder)
            if not folder.is_absolute():
                raise InvalidInputError(f"folder must be an absolute path, not {self.folder!r}")
            object.__setattr__(self, "folder", os.path.normpath(str(folder)))

    # ---------------------------------------------------------------- use
    def options(self, kind: str):
        """The settings for ``kind``: an XpcsRecipe, FthOptions, CdiOptions or RefocusOptions."""
        if kind == "xpcs":
            return self.xpcs
        if kind == "cdi":
            # the random starts seeded: a file and its template give the same reconstruction and
            # verdict whenever (and however often) the monitor analyses them; a template's own
            # seed wins
            values = dict(self.cdi or {})
            if values.get("seed") is None:
                values["seed"] = MONITOR_CDI_SEED
            return _imaging_options(kind, values)
        if kind in _IMAGING:
            return _imaging_options(kind, getattr(self, kind))
        raise InvalidInputError(f"no analysis for data of kind {kind!r}")

    def digest(self) -> str:
        """A short hash of what changes results (not who saved it, when, or the note)."""
        d = self.to_dict()
        for key in ("saved_by", "saved_at", "note", "folder"):
            d.pop(key, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def stamped(self, *, folder: str | None = None, saved_by: str | None = None) -> "Template":
        """A copy for ``folder``, saved now by ``saved_by``."""
        return Template(kind=self.kind, xpcs=self.xpcs, fth=self.fth, cdi=self.cdi,
                        refocus=self.refocus,
                        folder=folder if folder is not None else self.folder,
                        saved_by=saved_by, note=self.note,
                        saved_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    # ---------------------------------------------------------------- plain values
    def to_dict(self) -> dict:
        """Plain, YAML-friendly values; :meth:`from_dict` reads them back."""
        out = {"kind": self.kind, "xpcs": self.xpcs.to_dict(), "fth": dict(self.fth),
               "cdi": dict(self.cdi), "refocus": _refocus_text(self.refocus)}
        for key in ("folder", "saved_by", "saved_at", "note"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "Template":
        """Read :meth:`to_dict`'s form; every key optional, unknown keys refused by name."""
        d = {} if d is None else d
        if not isinstance(d, Mapping):
            raise InvalidInputError("a template is a mapping (kind:, xpcs:, fth:, cdi:, ...)")
        extra = sorted(set(map(str, d)) - set(_KEYS))
        if extra:
            raise InvalidInputError(f"unknown key {extra[0]!r}; a template has {', '.join(_KEYS)}")
        text = {k: (None if d.get(k) is None else str(d[k]))
                for k in ("folder", "saved_by", "saved_at", "note")}
        return cls(kind=str(d.get("kind", "auto")), xpcs=XpcsRecipe.from_dict(d.get("xpcs")),
                   fth=dict(d.get("fth") or {}), cdi=dict(d.get("cdi") or {}),
                   refocus=dict(d.get("refocus") or {}), **text)


def load_template(path) -> Template:
    """Read a template file (YAML).

    Raises
    ------
    InvalidInputError
        When the file cannot be read, is no YAML mapping, or holds an unknown key or a wrong
        value; the message names the file and the key.
    """
    import yaml

    path = Path(path)
    try:
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise InvalidInputError(f"{path}: too large for a template "
                                    f"(over {MAX_TEMPLATE_BYTES // 1024} kB)")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read the template ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path}: a template is a text (YAML) file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    try:
        return Template.from_dict(data)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from None


def save_template(template: Template, path) -> Path:
    """Write ``template`` as YAML, atomically (a reader sees the old file or the new one)."""
    import yaml

    path = Path(path)
    text = ("# speckle analysis template: how new files are analysed (edit freely; keys and\n"
            "# units are explained in speckle/monitor/templates.py and the README)\n"
            + yaml.safe_dump(template.to_dict(), sort_keys=False, allow_unicode=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


def _slug(folder: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(folder).name).strip("._-")[:40] or "folder"
    return f"{name}-{hashlib.sha256(folder.encode()).hexdigest()[:8]}"


class TemplateStore:
    """The per-folder templates in a folder of YAML files (``<results>/templates``).

    Each file holds one template with its ``folder``; files are read again when they change, so
    a person may edit them while the monitor runs. A file that cannot be read is reported by
    :meth:`problems` and ignored.

    Parameters
    ----------
    root : path-like
        The templates folder (created on the first :meth:`save`).
    """

    def __init__(self, root):
        self.root = Path(root)
        self._cache: dict[Path, tuple[tuple, Template | None, str | None]] = {}

    def _scan(self) -> dict[Path, tuple[Template | None, str | None]]:
        out = {}
        try:
            files = sorted(p for p in self.root.glob("*.yaml") if not p.name.startswith("."))
        except OSError:
            files = []
        for p in files:
            try:
                st = p.stat()
            except OSError:
                continue
            stamp = (st.st_size, st.st_mtime_ns)
            cached = self._cache.get(p)
            if cached is None or cached[0] != stamp:
                try:
                    t, err = load_template(p), None
                    if t.folder is None:
                        t, err = None, f"{p}: a per-folder template needs its folder (folder: PATH)"
                except InvalidInputError as exc:
                    t, err = None, str(exc)
                cached = (stamp, t, err)
                self._cache[p] = cached
            out[p] = cached[1:]
        self._cache = {p: v for p, v in self._cache.items() if p in out}
        return out

    def templates(self) -> dict[str, Template]:
        """The readable templates by folder."""
        return {t.folder: t for t, _err in self._scan().values() if t is not None}

    def problems(self) -> list[str]:
        """One line per template file that cannot be used."""
        return [err for _t, err in self._scan().values() if err]

    def for_path(self, path) -> Template | None:
        """The template of the nearest folder above ``path``, or None."""
        path = os.path.normpath(os.path.abspath(path))
        best = None
        for folder, t in self.templates().items():
            if path.startswith(folder.rstrip("/") + "/") and (best is None or len(folder) > len(best.folder)):
                best = t
        return best

    def path_for(self, folder: str) -> Path:
        """The file that holds ``folder``'s template."""
        return self.root / f"{_slug(os.path.normpath(folder))}.yaml"

    def save(self, template: Template) -> Path:
        """Save a per-folder template (replacing that folder's previous one)."""
        if template.folder is None:
            raise InvalidInputError("a per-folder template needs its folder")
        return save_template(template, self.path_for(template.folder))
