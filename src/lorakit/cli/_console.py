"""Shared rich consoles for the CLI (stdout for results, stderr for errors/warnings)."""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
