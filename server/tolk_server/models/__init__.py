"""Prompt profiles, quality modes and the routing table: data, no I/O."""
