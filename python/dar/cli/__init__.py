"""The `dar` command (`python -m dar`, `python -m dar.cli`).

May import: every other layer; nothing imports it.
"""

from dar.cli.main import main

__all__ = ["main"]
