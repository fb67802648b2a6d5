"""Plugin entry point for segmind (being built)."""
