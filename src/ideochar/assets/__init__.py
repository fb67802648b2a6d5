"""Files the project ships: the reference character used by the demo and by ``ideochar quote``.

``reference.png`` is "Juno", a character this project drew itself with Pillow
(:mod:`ideochar.assets.make_reference` redraws it byte for byte), so the demo needs no photo of a real person
and no licence. Read it through :func:`reference_bytes` or :func:`reference_path`, which work from a wheel,
an editable install or a zip.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from importlib.resources import as_file, files
from pathlib import Path

__all__ = ["REFERENCE_NAME", "reference_bytes", "reference_path"]

#: The character's name, as written on her name tag (the demo's prompt uses it).
REFERENCE_NAME = "Juno"
_FILE = "reference.png"


def reference_bytes() -> bytes:
    """The shipped reference image, as PNG bytes."""
    return files(__name__).joinpath(_FILE).read_bytes()


def reference_path() -> AbstractContextManager[Path]:
    """A context manager giving a real file path to the reference (a temporary copy if zipped)."""
    return as_file(files(__name__).joinpath(_FILE))
