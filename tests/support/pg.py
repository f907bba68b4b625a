"""A throwaway Postgres server for the test suite.

Order of preference: ``DAR_TEST_POSTGRES_URL``; the machine's own Postgres binaries
(``pg_ctl`` on PATH or under /usr/lib/postgresql); the ``pgserver`` wheel from PyPI. When
none can be had the suite fails: a Postgres test is never skipped.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    candidates = [shutil.which("pg_ctl"), *found]
    for c in candidates:
        if c and Path(c).exists():
            return Path(c).resolve().parent
    return None


class LocalServer:
    """``initdb`` + ``pg_ctl`` in a temporary folder, on a free loopback port.

    Postgres refuses to run as root, so as root it runs as the ``postgres`` user (or
    ``nobody``). ``listen``: the addresses it listens on besides loopback (a bridge that
    network namespaces reach it through); clients on its subnets are trusted.
    """

    def __init__(self, bindir: Path, listen: tuple[str, ...] = ()) -> None:
        self.bindir = bindir
        self.listen = ("127.0.0.1", *listen)
        self.dir = Path(tempfile.mkdtemp(prefix="dar-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            assert self.user is not None, "no unprivileged user to run Postgres as"
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        if listen:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")  # the hosts on the bridge
        self.start()
        self.url = self.url_at("127.0.0.1")

    def url_at(self, host: str) -> str:
        """The server's URL through one of the addresses it listens on."""
        return f"postgresql://postgres@{host}:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs = {
                "user": self.user.pw_uid,
                "group": self.user.pw_gid,
                "extra_groups": [],
                "cwd": str(self.dir),
            }
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> None:
        # fsync=off only risks data on an OS crash, which no test simulates. Commits stay
        # synchronous: a restarted server must keep every commit it acknowledged.
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={','.join(self.listen)} -c fsync=off"
            " -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():  # it may have been stopped already
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class PgServerWheel:
    """The ``pgserver`` package: a Postgres build shipped in a wheel."""

    def __init__(self) -> None:
        from pgserver.postgres_server import get_server

        self.dir = tempfile.mkdtemp(prefix="dar-pgserver-")
        self.server = get_server(self.dir, cleanup_mode="stop")
        self.url = self.server.get_uri()

    def close(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_server() -> LocalServer | PgServerWheel:
    """Start a private server, or raise with every reason it could not be had."""
    errors = []
    bindir = _bindir()
    if bindir is not None and not os.environ.get("DAR_TEST_PGSERVER_WHEEL"):
        try:
            return LocalServer(bindir)
        except Exception as exc:
            errors.append(f"local binaries in {bindir}: {exc}")
    try:
        return PgServerWheel()
    except Exception as exc:
        errors.append(f"pgserver wheel: {exc}")
    raise RuntimeError("no Postgres server for the tests:\n" + "\n".join(errors))


def migrate_before(conn: Any, schema: str, migration: str) -> None:
    """Create ``schema`` migrated by every shipped migration before ``migration`` (a name
    prefix such as ``"0008"``): the database as an older version of `dar` left it. The
    connection's search path is left on the schema."""
    from dar.store.migrate import migration_files

    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(f'SET search_path TO "{schema}"')
    conn.execute("CREATE TABLE dar_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ)")
    for name, script in migration_files("postgres"):
        if name < migration:
            conn.execute(script)
            conn.execute("INSERT INTO dar_migrations VALUES (%s, now())", (name,))
