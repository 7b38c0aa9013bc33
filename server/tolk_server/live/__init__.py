"""Live input: re-translation with a stable prefix (LocalAgreement-2) and its metrics."""
