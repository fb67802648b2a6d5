"""Plugin entry point for fal (being built)."""
