"""ideochar's ideogram provider."""
