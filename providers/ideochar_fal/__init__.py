"""ideochar's fal provider: Ideogram V3 Character through fal's queue (``queue.fal.run``) or ``fal.run``.

``plugin`` registers :class:`~ideochar_fal.provider.FalProvider` through the same hooks a third-party
plugin uses; ``wire`` holds fal's shapes, ``mapping`` the pure neutral-to-fal translation, ``errors``
the status-to-error table. Nothing is imported here, so loading the plugin stays cheap.
"""
