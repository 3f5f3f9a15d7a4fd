"""``python -m apps.loadrun.host_main FD``: the engine host's program (see ``engine_host``).

A module of its own that nothing imports: run with ``-m``, a module the package already
imported (``engine_host``, through ``apps.loadrun``) would be loaded a second time as
``__main__``, and the ``HostSetup`` the runner pickles would not be the class it checks.
"""

from __future__ import annotations

import sys

from apps.loadrun.engine_host import main

if __name__ == "__main__":
    sys.exit(main())
