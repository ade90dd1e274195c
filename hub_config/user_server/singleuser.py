"""The command every user server runs: ``jupyterhub-singleuser``, less 1.8 s of start-up.

jupyter-server validates its events with jsonschema (through jupyter_events), and jsonschema
imports every format checker it can find at import time. ``rfc3987_syntax`` (installed by
``jsonschema[format-nongpl]``) compiles about 35 Lark grammars when imported: 1.8 s of a 4-5 s
server start on the 2-core machine, paid while the user waits for the dashboard
(python-jsonschema/jsonschema#1428). No Jupyter schema uses the formats it checks
(``iri``, ``iri-reference``), and jsonschema simply leaves those formats unchecked when the module
cannot be imported, so it is blocked here, in this process only (kernels are other processes).

Runs as the user's own unix account with the project's python; standard library and jupyterhub only.
"""

import sys

sys.modules.setdefault("rfc3987_syntax", None)  # `import rfc3987_syntax` now raises ImportError

from jupyterhub.singleuser import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
