"""ideochar's replicate provider."""
