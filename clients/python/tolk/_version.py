"""The SDK's version (a leaf: the package and the transport both read it)."""

__version__ = "0.1.0"
