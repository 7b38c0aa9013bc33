"""The only modules that touch vLLM, another tolk server, or the engine double."""
