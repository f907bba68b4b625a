"""A throwaway PgBouncer in transaction pooling mode, in front of the tests' Postgres.

Debian's ``pgbouncer`` (``apt-get install pgbouncer``; `make test` installs it), started like
`tests.support.pg` starts Postgres: a config in a temporary folder, a free loopback port,
trust authentication (the user must still be listed in the userlist), and, as root, the
``postgres`` user. Its few server connections are shared by every client, so anything that
needs a session of its own breaks here as it would in production.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.pg import _free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class Bouncer:
    """PgBouncer in ``pool_mode = transaction`` in front of the Postgres at ``server_url``,
    with at most ``pool_size`` server connections per database and user, listening on
    loopback and on ``listen``."""

    def __init__(self, server_url: str, pool_size: int = 4, listen: tuple[str, ...] = ()) -> None:
        if not Path(BINARY).exists():
            raise RuntimeError("no pgbouncer binary: apt-get install pgbouncer")
        server = urlsplit(server_url)
        self.dir = Path(tempfile.mkdtemp(prefix="dar-pgbouncer-"))
        self.port = _free_port()
        user = server.username or "postgres"
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.hostname} port={server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {','.join(('127.0.0.1', *listen))}\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.dir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            "max_client_conn = 500\n"
            f"logfile = {self.dir / 'log'}\npidfile = {self.dir / 'pid'}\n"
        )
        args = [BINARY, "-d"]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            args += ["-u", "postgres"]
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        subprocess.run([*args, str(self.dir / "pgbouncer.ini")], check=True, timeout=30)
        self._wait_listening()
        self.user, self.path = user, server.path
        self.url = self.url_at("127.0.0.1")

    def url_at(self, host: str) -> str:
        """The pooler's URL through one of the addresses it listens on."""
        return f"postgresql://{self.user}@{host}:{self.port}{self.path}"

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        log = self.dir / "log"
        raise RuntimeError(f"pgbouncer did not start:\n{log.read_text() if log.exists() else ''}")

    def close(self) -> None:
        pidfile = self.dir / "pid"
        try:
            if pidfile.exists():
                pid = int(pidfile.read_text())
                os.kill(pid, 15)
                for _ in range(200):
                    os.kill(pid, 0)  # raises once it has gone
                    time.sleep(0.01)
        except (ProcessLookupError, ValueError):
            pass
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
