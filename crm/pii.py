"""Personal data encrypted at rest, and blind indexes to find it again.

A value is sealed with AES-256-GCM (``cryptography``) under a subkey derived by HKDF-SHA256
from a root key for its table and column; the associated data is ``table/column/row id``,
so a ciphertext copied to another column or row does not open. Each ciphertext names the
root key that sealed it: ``<key id>$<base64url(nonce | ciphertext | tag)>``.

Root keys come from ``PII_KEYS`` (``id:base64,id:base64``: the first seals, all open) or,
when it is unset, from the instance folder's ``pii_keys`` file, made on first run (one
``id:base64`` per line, the first seals). Blind indexes use their own key
(``PII_INDEX_KEY``, or the file's ``index:`` line), never a sealing key, so rotating the
sealing keys leaves every index as it is.

A blind index is HMAC-SHA256 of the normalised value (crm/identifiers.py, whose
``NORMALIZATION_VERSION`` is part of the index's subkey and of its text), truncated:
16 bytes for whole identifiers (unique columns), 8 for fragments used to block duplicate
candidates (a phone's last seven digits, an email's first five characters, a birthday).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from crm.identifiers import NORMALIZATION_VERSION

KEY_FILE = "pii_keys"
INDEX_BYTES = 16
FRAGMENT_BYTES = 8
NONCE_BYTES = 12
_SEP = "$"


class KeyRingError(Exception):
    """A key ring that cannot be used (a malformed key, an unknown key id)."""


class CannotOpen(ValueError):
    """A ciphertext that does not open: another row's, changed, or of an unknown key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(root: bytes, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=info.encode()).derive(root)


def new_key() -> str:
    """A fresh 256-bit root key, as ``PII_KEYS`` and the key file write it."""
    return _b64(secrets.token_bytes(32))


def parse_keys(text: str) -> list[tuple[str, bytes]]:
    """``id:base64`` items separated by commas or new lines (``index:`` lines left out)."""
    keys = []
    for item in text.replace(",", "\n").splitlines():
        item = item.strip()
        if not item or item.startswith("#") or item.startswith("index:"):
            continue
        key_id, _, encoded = item.partition(":")
        if not key_id.isalnum() or len(key_id) > 16:
            raise KeyRingError(f"A PII key id is 1 to 16 letters or digits, not {key_id!r}.")
        root = _unb64(encoded)
        if len(root) != 32:
            raise KeyRingError(f"The PII key {key_id} is not 32 bytes of base64.")
        keys.append((key_id, root))
    if not keys:
        raise KeyRingError("No PII key given.")
    return keys


def _index_key(text: str) -> bytes | None:
    for line in text.replace(",", "\n").splitlines():
        if line.strip().startswith("index:"):
            return _unb64(line.strip().removeprefix("index:"))
    return None


RELOAD_SECONDS = 5.0  # how often a process looks whether the key file changed


@dataclass
class Keyring:
    keys: list[tuple[str, bytes]]  # the first seals
    index_root: bytes
    source: str  # "env" or the key file's path
    _aead: dict[tuple[str, str], AESGCM] = field(default_factory=dict, repr=False)
    _hmac: dict[str, bytes] = field(default_factory=dict, repr=False)
    _checked: float = field(default=0.0, repr=False)
    _mtime: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def refresh(self, now: bool = False) -> None:
        """Read the key file again if it changed (looked at every RELOAD_SECONDS, or
        ``now``): a key added by ``flask security rotate-key`` reaches running processes
        without a restart, and they open what the re-encryption sealed with it."""
        if self.source == "env":
            return
        moment = time.monotonic()
        if not now and moment - self._checked < RELOAD_SECONDS:
            return
        with self._lock:
            self._checked = moment
            try:
                mtime = os.stat(self.source).st_mtime
            except FileNotFoundError:
                return
            if mtime != self._mtime:
                self.keys = parse_keys(Path(self.source).read_text())
                self._mtime = mtime

    @property
    def current(self) -> str:
        return self.keys[0][0]

    @property
    def ids(self) -> list[str]:
        return [k for k, _ in self.keys]

    def _cipher(self, key_id: str, where: str) -> AESGCM:
        cipher = self._aead.get((key_id, where))
        if cipher is None:
            root = dict(self.keys).get(key_id)
            if root is None:
                self.refresh(now=True)
                root = dict(self.keys).get(key_id)
            if root is None:
                raise CannotOpen(f"sealed with key {key_id}, which is not in the key ring")
            cipher = self._aead[(key_id, where)] = AESGCM(_derive(root, f"crm-pii:{where}"))
        return cipher

    def seal(self, table: str, column: str, row_id: int, value: str | None) -> str | None:
        if value is None:
            return None
        self.refresh()
        where = f"{table}.{column}"
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher(self.current, where).encrypt(
            nonce, value.encode(), f"{table}/{column}/{row_id}".encode())
        return f"{self.current}{_SEP}{_b64(nonce + sealed)}"

    def open(self, table: str, column: str, row_id: int, sealed: str | None) -> str | None:
        if sealed is None:
            return None
        key_id, _, body = sealed.partition(_SEP)
        raw = _unb64(body)
        try:
            return self._cipher(key_id, f"{table}.{column}").decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                f"{table}/{column}/{row_id}".encode()).decode()
        except InvalidTag:
            raise CannotOpen(f"{table}.{column} of row {row_id} does not open") from None

    def index(self, kind: str, normalized: str, version: int,
              size: int = INDEX_BYTES) -> str:
        name = f"{kind}.v{version}"
        key = self._hmac.get(name)
        if key is None:
            key = self._hmac[name] = _derive(self.index_root, f"crm-blind-index:{name}")
        digest = hmac.new(key, normalized.encode(), hashlib.sha256).digest()[:size]
        return f"{version}.{_b64(digest)}"


def key_id_of(sealed: str | None) -> str | None:
    return None if sealed is None else sealed.partition(_SEP)[0]


def key_file(instance_path: Path) -> Path:
    return instance_path / KEY_FILE


def _write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it exists: aside, then linked into place, so that
    workers starting at once all read the one file that won."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def load(config: Mapping[str, Any], instance_path: Path) -> Keyring:
    """The key ring of ``PII_KEYS``/``PII_INDEX_KEY``, else of the instance's key file
    (made now if missing)."""
    if config.get("PII_KEYS"):
        text = str(config["PII_KEYS"])
        index = config.get("PII_INDEX_KEY") or _index_key(text)
        if not index:
            raise KeyRingError("PII_KEYS is set: set PII_INDEX_KEY too (the blind index key).")
        index_root = _unb64(index) if isinstance(index, str) else index
        return Keyring(parse_keys(text), index_root, "env")
    path = key_file(instance_path)
    if not path.exists():
        _write_new(path, f"k1:{new_key()}\nindex:{new_key()}\n")
    text = path.read_text()
    index_root = _index_key(text)
    if index_root is None:
        raise KeyRingError(f"{path} has no index: line (the blind index key).")
    return Keyring(parse_keys(text), index_root, str(path), _checked=time.monotonic(),
                   _mtime=os.stat(path).st_mtime)


def add_key(path: Path) -> str:
    """Put a new sealing key first in the key file; answer its id."""
    text = path.read_text()
    ids = {k for k, _ in parse_keys(text)}
    number = 1
    while f"k{number}" in ids:
        number += 1
    key_id = f"k{number}"
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(f"{key_id}:{new_key()}\n{text}")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key_id


def remove_key(path: Path, key_id: str) -> None:
    lines = [line for line in path.read_text().splitlines()
             if line.partition(":")[0].strip() != key_id]
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def init_app(app: Any) -> None:
    app.extensions["pii"] = load(app.config, Path(app.instance_path))


def keyring() -> Keyring:
    return current_app.extensions["pii"]


def seal(table: str, column: str, row_id: int, value: str | None) -> str | None:
    """``value`` sealed for ``table.column`` of row ``row_id`` (None stays None)."""
    return keyring().seal(table, column, row_id, value)


def open_(table: str, column: str, row_id: int, sealed: str | None) -> str | None:
    return keyring().open(table, column, row_id, sealed)


def blind_index(kind: str, normalized: str, version: int | None = None) -> str:
    """The blind index of a normalised identifier of ``kind`` (unique where it is)."""
    return keyring().index(kind, normalized, version or NORMALIZATION_VERSION)


def fragment_index(kind: str, fragment: str, version: int | None = None) -> str:
    """A shorter blind index of a fragment (``phone_end``, ``email_start``, ``birthday``)
    for blocking duplicate candidates: it finds people who share the fragment."""
    return keyring().index(f"fragment.{kind}", fragment, version or NORMALIZATION_VERSION,
                           FRAGMENT_BYTES)
