"""A small JSON file that the server re-reads when it changes and writes atomically.

The `memory` store keeps keys and glossaries in such files, so `tolk keys revoke` or
`tolk glossary add` take effect on a running server without a restart. A change is a
read-modify-write under an exclusive lock (`update`), so two writers never lose one's change.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
FILE_MODE = 0o600
FOLDER_MODE = 0o700


class WatchedJsonFile(Generic[T]):
    def __init__(self, path: Path, parse: Callable[[Any], T], empty: Callable[[], T]) -> None:
        self.path = path
        self._parse = parse
        self._empty = empty
        self._stamp: tuple[int, int, int] | None = None
        self._value: T = empty()

    def load(self) -> T:
        """The parsed content; re-read only when the file was replaced or changed."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._value = None, self._empty()
            return self._value
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # os.replace gives a new inode
        if stamp != self._stamp:
            self._value = self._parse(json.loads(self.path.read_text(encoding="utf-8")))
            self._stamp = stamp
        return self._value

    def save(self, raw: Any) -> None:
        """Write `raw` as JSON: to a temporary file first, then renamed into place. Stores hold
        keys' hashes, tenants' terms and names: the file is the owner's only (0600), and so is
        a folder made for it (0700)."""
        self.path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(raw, fh, ensure_ascii=False, indent=1, sort_keys=True)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, self.path)
        self._stamp = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[T]:
        """The current content, read under an exclusive lock held until the block ends: a
        read-modify-write (`save` inside the block) that no other writer interleaves with."""
        self.path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._stamp = None  # re-read: another process may have written since
            yield self.load()
        finally:
            os.close(fd)  # releases the lock
