"""A content-addressed response cache: never pay twice for a call already made.

Keys hash everything that shapes a response (provider identity: endpoint, model, version,
parameters; and the rendered messages). Values are the call's result. Errors are never
stored. SQLite in WAL mode makes writes cheap and safe for several processes on one host.
"""

import hashlib
import json
import os
import sqlite3
import threading


def cache_key(identity: dict, messages) -> str:
    """The key of one request: a hash of the provider's identity and what it is asked."""
    payload = json.dumps([identity, messages], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def key_maker(identity: dict):
    """``cache_key(identity, ·)`` for many requests: the identity is serialised and hashed once."""
    head = hashlib.sha256(("[" + json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str) + ",").encode())
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode

    def key(messages) -> str:
        h = head.copy()
        h.update((dumps(messages) + "]").encode())
        return h.hexdigest()

    return key


class ResponseCache:
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)")
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """Look up many keys at once (one query per 500 keys)."""
        found: dict[str, dict] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk):
                    found[k] = json.loads(v)
        return found

    def put_many(self, items: list[tuple[str, dict]]) -> None:
        if not items:
            return
        import time

        now = time.time()
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                                 [(k, json.dumps(v), now) for k, v in items])
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
