"""``python -m refgrad``: see :mod:`refgrad.cli`."""

from refgrad.cli import main

raise SystemExit(main())
