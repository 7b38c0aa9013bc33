"""One request path for every kind: plan, admit, generate, emit."""
