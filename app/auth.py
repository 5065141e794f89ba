"""Accounts of a shared server: ``ovformer users add NAME`` and ``ovformer app --users``.

Passwords are stored hashed with scrypt (:func:`hashlib.scrypt`, a standard memory-hard KDF,
with a random salt per user) in ``<data folder>/users.json``, written atomically and readable by
the owner only. Nothing here imports Gradio: :meth:`Users.verify` is the ``auth`` callable the
app passes to ``launch``; the page then knows the user by ``gr.Request.username``.

A user's name is also the name of their folders (``<data>/users/<name>/exports`` and so on), so
it is restricted to letters, digits, ``_``, ``.`` and ``-``.
"""
from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
from pathlib import Path
from typing import Sequence

USERS_FILE = "users.json"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
MIN_PASSWORD = 8
#: scrypt cost: 2**14 x 8 x 1 takes about 50 ms and 16 MB per check (OWASP's minimum)
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class UserError(ValueError):
    """A refused account change; the message is for the person at the terminal."""


def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32)


class Users:
    """The accounts of one data folder."""

    def __init__(self, home: str | Path) -> None:
        self.path = Path(home) / USERS_FILE
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _write(self, data: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{USERS_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def names(self) -> list[str]:
        return sorted(self._read())

    def exists(self) -> bool:
        return bool(self._read())

    def add(self, name: str, password: str, admin: bool = False, replace: bool = False) -> None:
        if not NAME_RE.match(name or ""):
            raise UserError(f"{name!r} is not a valid user name (1-32 letters, digits, '_', '.', '-')")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"the password needs at least {MIN_PASSWORD} characters")
        with self._lock:
            data = self._read()
            if name in data and not replace:
                raise UserError(f"user {name} exists already (use `ovformer users passwd {name}`)")
            salt = secrets.token_bytes(16)
            data[name] = {"kdf": "scrypt", **SCRYPT, "salt": salt.hex(),
                          "hash": _hash(password, salt, **SCRYPT).hex(),
                          "admin": bool(admin if name not in data or admin else data[name].get("admin"))}
            self._write(data)

    def remove(self, name: str) -> None:
        with self._lock:
            data = self._read()
            if data.pop(name, None) is None:
                raise UserError(f"there is no user {name}")
            self._write(data)

    def set_admin(self, name: str, admin: bool) -> None:
        with self._lock:
            data = self._read()
            if name not in data:
                raise UserError(f"there is no user {name}")
            data[name]["admin"] = bool(admin)
            self._write(data)

    def verify(self, name: str, password: str) -> bool:
        """The ``auth`` callable of ``launch``: True when the password is the user's."""
        rec = self._read().get(str(name))
        if not rec or not isinstance(password, str) or len(password) > 1024:
            return False
        try:
            got = _hash(password, bytes.fromhex(rec["salt"]), int(rec["n"]), int(rec["r"]), int(rec["p"]))
        except (KeyError, ValueError):
            return False
        return hmac.compare_digest(got.hex(), rec["hash"])

    def is_admin(self, name: str) -> bool:
        return bool(self._read().get(name, {}).get("admin"))


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:  # scripts and tests: one line on stdin, never on the command line
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if first != getpass.getpass("again: "):
        raise UserError("the two passwords differ")
    return first


def main(argv: Sequence[str] | None = None) -> int:
    """``ovformer users add|passwd|remove|admin|list``."""
    from .annotate.store import default_home

    p = argparse.ArgumentParser(prog="ovformer users", description="accounts of `ovformer app --users`")
    p.add_argument("--data", default=None, metavar="DIR", help="data folder (default $OVFORMER_HOME or ~/.ovformer)")
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd, help_ in (("add", "add a user (the password is prompted)"), ("passwd", "change a password")):
        sp = sub.add_parser(cmd, help=help_)
        sp.add_argument("name")
        sp.add_argument("--admin", action="store_true", help="may change the shared model")
        sp.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub.add_parser("remove", help="remove a user (their projects stay in the data folder)").add_argument("name")
    sp = sub.add_parser("admin", help="grant or revoke the right to change the shared model")
    sp.add_argument("name")
    sp.add_argument("--revoke", action="store_true")
    sub.add_parser("list", help="list the users")
    args = p.parse_args(argv)
    users = Users(Path(args.data) if args.data else default_home())
    try:
        if args.cmd in ("add", "passwd"):
            if args.cmd == "passwd" and args.name not in users.names():
                raise UserError(f"there is no user {args.name}")
            users.add(args.name, _password(args), admin=args.admin, replace=args.cmd == "passwd")
            print(f"user {args.name} {'added' if args.cmd == 'add' else 'updated'}"
                  + (" (admin)" if users.is_admin(args.name) else ""))
        elif args.cmd == "remove":
            users.remove(args.name)
            print(f"user {args.name} removed")
        elif args.cmd == "admin":
            users.set_admin(args.name, not args.revoke)
            print(f"user {args.name} is {'no longer ' if args.revoke else ''}an admin")
        else:
            for n in users.names():
                print(n + (" (admin)" if users.is_admin(n) else ""))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
