"""``python -m speckle_hub.beamtime``: the Beamtime service (started by the hub)."""

from speckle_hub.beamtime.service import main

if __name__ == "__main__":
    main()
