"""`python -m beemesh` (and the .pyz) run the same CLI as the `beemesh` script."""

from beemesh.cli import main

raise SystemExit(main())
