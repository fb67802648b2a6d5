"""The output files the emulator serves at ``/_emulator/files/{id}`` (its stand-in for a vendor's CDN).

A rendered file keeps how to render it again rather than its bytes (the renderer is deterministic and
keeps recent images in a bounded cache), so a thousand finished jobs cost little memory. Files given as
bytes are kept once per content. A file can be expired (by a fault, or the admin endpoint) to test a
client against result URLs that have gone stale.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ideochar.emulator.kit import StoredFile
from ideochar.emulator.render import Recipe, RenderCache, is_cheap, render_recipe

__all__ = ["FILES_PATH", "FileStore"]

#: Where files are served, under the emulator's root.
FILES_PATH = "/_emulator/files"

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


@dataclass
class _Entry:
    vendor: str
    file: StoredFile
    data: bytes | None
    recipe: Recipe | None
    created: float
    expired: bool = False
    expires_at: float | None = None
    """When an uploaded file goes (a ``time.time()`` value); None: kept."""

    def gone(self, now: float) -> bool:
        return self.expired or (self.expires_at is not None and now >= self.expires_at)


class FileStore:
    def __init__(self, renders: RenderCache, *, clock: Callable[[], float] = time.time) -> None:
        self.renders = renders
        self.clock = clock
        self._files: dict[str, _Entry] = {}
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @staticmethod
    def new_id(content_type: str) -> str:
        return secrets.token_hex(12) + _EXTENSIONS.get(content_type, "")

    def _new(
        self,
        vendor: str,
        content_type: str,
        size: int,
        data: bytes | None,
        recipe: Recipe | None,
        *,
        file_id: str | None = None,
        expires_at: float | None = None,
    ) -> StoredFile:
        file_id = file_id or self.new_id(content_type)
        file = StoredFile(id=file_id, content_type=content_type, size=size, file_name=file_id)
        with self._lock:
            self._files[file_id] = _Entry(vendor, file, data, recipe, self.clock(), expires_at=expires_at)
        return file

    def add_bytes(
        self,
        vendor: str,
        data: bytes,
        content_type: str,
        *,
        file_id: str | None = None,
        expires_at: float | None = None,
    ) -> StoredFile:
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            data = self._blobs.setdefault(digest, data)
        return self._new(vendor, content_type, len(data), data, None, file_id=file_id, expires_at=expires_at)

    def add_recipe(self, vendor: str, recipe: Recipe, data: bytes) -> StoredFile:
        """A rendered file: ``data`` is its first rendering (for its size); the recipe renders it again."""
        return self._new(vendor, recipe.content_type, len(data), None, recipe)

    def entry(self, file_id: str) -> _Entry | None:
        return self._files.get(file_id)

    def vendor_of(self, file_id: str) -> str | None:
        entry = self._files.get(file_id)
        return entry.vendor if entry else None

    def read(self, file_id: str) -> bytes | None:
        """The file's bytes; None when unknown or expired."""
        entry = self._files.get(file_id)
        if entry is None or entry.gone(self.clock()):
            return None
        if entry.data is not None:
            return entry.data
        assert entry.recipe is not None
        return render_recipe(entry.recipe, self.renders)

    def is_cheap(self, file_id: str) -> bool:
        """True when :meth:`read` takes about a millisecond (bytes kept, or the render's canvas cached)."""
        entry = self._files.get(file_id)
        return entry is None or entry.recipe is None or is_cheap(entry.recipe, self.renders)

    def expire(self, *, vendor: str | None = None, file_id: str | None = None) -> int:
        """Expire matching files (all when nothing is named); how many were live."""
        count = 0
        with self._lock:
            for key, entry in self._files.items():
                if (
                    (vendor is None or entry.vendor == vendor)
                    and (file_id is None or key == file_id)
                    and not entry.expired
                ):
                    entry.expired = True
                    count += 1
        return count

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._blobs.clear()

    def __len__(self) -> int:
        return len(self._files)
