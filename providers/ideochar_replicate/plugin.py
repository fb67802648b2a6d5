"""Plugin entry point for replicate (being built)."""
