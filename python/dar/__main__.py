"""`python -m dar`: the `dar` command, for environments without the script on PATH."""

from dar.cli.main import main

raise SystemExit(main())
