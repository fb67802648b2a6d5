"""The command line's parts: option parsing, the progress display, output files and tables.

Kept apart from :mod:`ideochar.cli` (which only declares commands) so the demo can reuse the same
output code, and so each part is tested on its own. Nothing here is imported by ``import ideochar``.
"""
