"""What every dashboard family shares: data choice and upload, run panels, result folders,
download links, the server's paths, the device badge, saved results, beamtime templates, and
the interactive canvas that images are drawn on.
"""
