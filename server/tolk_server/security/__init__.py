"""API keys, principals, origins and the HTTP guard."""
