"""tolk_bench: the benchmark runner (`tolk bench`)."""
