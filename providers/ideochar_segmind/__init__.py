"""ideochar's Segmind provider: Ideogram V3 Character through ``api.segmind.com``.

``plugin`` registers :class:`~ideochar_segmind.provider.SegmindProvider` through the same hooks a
third-party plugin uses; ``wire`` holds Segmind's shapes, ``mapping`` the pure neutral-to-Segmind
translation, ``errors`` the status-to-error table. Nothing is imported here, so loading the plugin
stays cheap.
"""
