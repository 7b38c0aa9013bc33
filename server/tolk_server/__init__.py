"""tolk server: the transport, the engine adapter and the glue between them."""

__version__ = "0.1.0"
