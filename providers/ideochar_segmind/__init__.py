"""ideochar's segmind provider."""
