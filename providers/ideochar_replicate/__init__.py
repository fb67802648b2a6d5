"""ideochar's Replicate provider: Ideogram V3 Character as ``ideogram-ai/ideogram-character``.

``provider`` holds the exchange, ``wire`` Replicate's JSON shapes, ``mapping`` the pure neutral ->
wire functions and tables, ``errors`` the answer -> error table. Importing this package loads none
of them (the plugin imports the provider on first use).
"""
