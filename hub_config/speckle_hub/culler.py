"""The idle culler as a hub-managed service that stops at once when the hub stops.

JupyterHub stops a managed service with SIGINT and waits 30 s before SIGTERM. A process started
from a shell without job control inherits SIGINT *ignored*, so jupyterhub-idle-culler then sat out
the whole 30 s on every hub stop. Here SIGINT and SIGTERM end the process immediately (the culler
holds no state worth saving), then the real culler runs with the given arguments. It dies with
the hub (speckle_hub.lifetime): a hub killed with SIGKILL leaves no culler behind to poll the next.
"""

import signal
import sys


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from speckle_hub.lifetime import die_with_parent

    die_with_parent()
    from jupyterhub_idle_culler import main as culler_main

    sys.argv[0] = "jupyterhub-idle-culler"
    culler_main()


if __name__ == "__main__":
    main()
