"""The imaging dashboards (FTH, propagation, CDI) and their reusable components.

A dashboard notebook is two lines::

    from speckle.ui.imaging import fth_dashboard
    fth_dashboard()

Components (every imaging dashboard composes them):

:class:`ComplexImageView`
    A complex image (magnitude as brightness, phase as hue; or magnitude, phase, real part) in
    linear, sqrt or log scale (``decades`` of the log scale settable) on an ipympl canvas, with
    rectangular regions selected by mouse or typed (one, several, or none) and half-transparent
    tints over chosen pixels (:meth:`ComplexImageView.set_tint`).
:class:`RefocusPanel`
    Energy (eV), pixel pitch (nm), distance range (µm), apodization, sharpness metric; Refocus /
    Cancel with progress; sharpness against distance with a draggable marker and a slider bound
    to it; the field (or its gradient) at the marker; downloads (CSV, PNG, HDF5).
:class:`FthDashboard`, :class:`PropagationDashboard`, :class:`CdiDashboard`
    The dashboards. Each also opens a saved imaging result (``result.h5``) chosen as data: the
    propagation dashboard takes its complex image as the field (with its region, energy and
    pixel size), the CDI dashboard shows its reconstruction to refocus, the FTH dashboard
    reconstructs its hologram.

The CSS classes are listed in :mod:`speckle.ui`.
"""

from .cdi import CdiDashboard, cdi_dashboard
from .complex_view import ComplexImageView
from .fth import FthDashboard, fth_dashboard
from .propagation import PropagationDashboard, propagation_dashboard
from .refocus import RefocusPanel
from .refocus_controller import RefocusInput
from .render import VIEWS, render_rgb

__all__ = ["VIEWS", "CdiDashboard", "ComplexImageView", "FthDashboard", "PropagationDashboard",
           "RefocusInput", "RefocusPanel", "cdi_dashboard", "fth_dashboard", "propagation_dashboard",
           "render_rgb"]
