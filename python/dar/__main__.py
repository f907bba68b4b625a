"""`python -m dar`: the `dar` command, for environments without the script on PATH."""

from dar.cli import main

raise SystemExit(main())
