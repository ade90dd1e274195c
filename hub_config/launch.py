"""`make hub` runs this: see speckle_hub/launch.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speckle_hub.launch import main  # noqa: E402

sys.exit(main())
