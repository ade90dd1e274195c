"""What each Slurm job runs: ``python singleuser_slurm.py <venv>/bin/jupyterhub-singleuser ARGS``.

batchspawner's ``batchspawner-singleuser`` (picks a free port on the compute node, tells the hub,
then runs the command) around the hub's own user server: ``hub_config/user_server`` on the path
for the preheated dashboards' kernel manager (``speckle_preheat``), and its ``singleuser`` module
imported first for its faster start (see there).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "user_server"))

import singleuser  # noqa: E402,F401  (blocks jsonschema's slow IRI checker in this process)
from batchspawner.singleuser import main  # noqa: E402

if __name__ == "__main__":
    main()
