"""`python -m lorakit ...`: the same as the `lorakit` command (the queue starts jobs this way)."""

from __future__ import annotations

from lorakit.cli.main import main

if __name__ == "__main__":
    main()
