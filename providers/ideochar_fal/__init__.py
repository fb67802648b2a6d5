"""ideochar's fal provider."""
