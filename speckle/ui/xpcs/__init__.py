"""The XPCS quick check: detector image with regions or q-rings, Analyze, results.

A dashboard notebook is two lines::

    from speckle.ui import xpcs_dashboard
    xpcs_dashboard()
"""

from .dashboard import XpcsDashboard, xpcs_dashboard
from .image_view import ImageView
from .results import ResultsView
from .runner import AnalysisRunner

__all__ = ["AnalysisRunner", "ImageView", "ResultsView", "XpcsDashboard", "xpcs_dashboard"]
