"""Plugin entry point for ideogram (being built)."""
