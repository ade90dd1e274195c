"""Imaging: propagation now; FTH, CDI phasing and conditioning come with issue 4."""
