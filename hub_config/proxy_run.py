"""systemd's speckle-proxy.service runs this: see speckle_hub/proxy.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speckle_hub.proxy import main  # noqa: E402

sys.exit(main())
