"""``python -m dar.cli``."""

from dar.cli.main import main

raise SystemExit(main())
