"""Hold a SQLite database's write lock from another process: ``python -m regressions.lock_holder DB SECONDS``.

Takes the lock with ``BEGIN EXCLUSIVE``, prints ``LOCKED`` once it holds it, keeps it ``SECONDS``, then
commits and exits: what another ideochar process (or a backup tool) holding the journal looks like.
"""

from __future__ import annotations

import sqlite3
import sys
import time


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    print("LOCKED", flush=True)
    time.sleep(seconds)
    db.execute("COMMIT")
    db.close()
    print("RELEASED", flush=True)


if __name__ == "__main__":
    main()
