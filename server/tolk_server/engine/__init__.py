"""The engine interface and decoding strategies above any engine."""
