"""The speckle hub's JupyterHub side: settings, authenticator, spawner, GPUs, templates.

Imported by the hub process only (``hub_config/jupyterhub_config.py`` puts ``hub_config/`` on the
path); user servers never import it.
"""
