"""ideochar's Ideogram provider: Ideogram 3.0 with a character reference, on Ideogram's own v3 API.

``provider`` holds the exchange, ``wire`` the multipart form and JSON shapes, ``mapping`` the pure
neutral -> wire functions and tables, ``errors`` the answer -> error table. Importing this package
loads none of them (the plugin imports the provider on first use).
"""
