"""Strict JSON text for values stored in result files (parameters, verdicts, attributes)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np

from ..backend import asnumpy

__all__ = ["jsonable", "to_json"]


def jsonable(obj):
    """Convert ``obj`` to strict JSON types (non-finite floats become None).

    numpy/cupy scalars and arrays become Python numbers and lists, dataclasses and objects
    with a ``to_dict()`` become dicts, paths and dates become text; anything else its ``str``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray) or type(obj).__module__.split(".")[0] == "cupy":
        return jsonable(np.asarray(asnumpy(obj)).tolist())
    if callable(getattr(obj, "to_dict", None)):
        return jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, (Path, _dt.datetime, _dt.date)):
        return str(obj)
    return str(obj)


def to_json(obj) -> str:
    """``obj`` as strict JSON text (UTF-8, no NaN)."""
    return json.dumps(jsonable(obj), allow_nan=False, ensure_ascii=False)
