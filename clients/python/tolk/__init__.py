"""tolk: the Python SDK for the tolk translation server.

Importing `tolk` is cheap: the clients load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'tolk' has no attribute {name!r}")
