"""Separate hosts, as far as the network is concerned: Linux network namespaces on a bridge.

`Hosts` makes a bridge in the root namespace (the database's host, `server_address`) and
one namespace per host, each joined to the bridge by a veth pair with an address of its
own; `spawn` starts a worker process inside a host (``ip netns exec``). Names carry the
test session's pid, so parallel sessions never collide; everything is removed by `close`,
at interpreter exit, and, for a session that was killed, by the next session (its pid is
gone). Needs root and iproute2 (`make test` installs it).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dar
from dar.audit.postmortem import VerifyReport, verify
from dar.core.ops import LogFilter

ROOT = Path(__file__).resolve().parents[2]
_NAMES = re.compile(r"^dar(?:h|b)(\d+)")


def ip(*args: str) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_leftovers() -> None:
    """Namespaces and bridges of sessions that died without cleaning up."""
    namespaces = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    bridges = [
        line.split(":")[1].strip().split("@")[0]
        for line in ip("-o", "link", "show", "type", "bridge").splitlines()
    ]
    for name in namespaces + bridges:
        found = _NAMES.match(name)
        if found and not _alive(int(found.group(1))):
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", name) if name in namespaces else ip("link", "del", name)


def _free_subnet(tag: int) -> str:
    """A /24 in 10.200.0.0/13 that no interface of this machine is on yet."""
    taken = ip("-o", "-4", "addr", "show")
    for n in range(2048):
        i = (tag + n) % 2048
        subnet = f"10.{200 + i // 256}.{i % 256}"
        if f" {subnet}." not in taken:
            return subnet
    raise RuntimeError("no free 10.200.0.0/13 subnet for the hosts' bridge")


class Hosts:
    """``count`` network namespaces on one bridge; the root namespace is the database's."""

    def __init__(self, count: int = 2) -> None:
        _remove_leftovers()
        tag = os.getpid()
        self.bridge = f"darb{tag}"
        subnet = _free_subnet(tag)
        self.server_address = f"{subnet}.1"
        self.names = [f"darh{tag}-{i}" for i in range(count)]
        self.addresses = [f"{subnet}.{10 + i}" for i in range(count)]
        self.procs: list[subprocess.Popen[str]] = []
        atexit.register(self.close)
        try:
            ip("link", "add", "name", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.server_address}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for i, (ns, addr) in enumerate(zip(self.names, self.addresses, strict=True)):
                outer, inner = f"darv{tag}{i}", f"darp{tag}{i}"
                ip("netns", "add", ns)
                ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
                ip("link", "set", outer, "master", self.bridge, "up")
                ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
                ip("-n", ns, "link", "set", inner, "up")
                ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def spawn(self, host: int, job: dict[str, Any]) -> subprocess.Popen[str]:
        """A worker process (`tests.support.host_worker`) inside host ``host``; it prints
        one JSON line of results when done."""
        env = dict(os.environ)
        paths = [str(ROOT), str(Path(dar.__file__).parents[1]), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        cmd = ["ip", "netns", "exec", self.names[host], sys.executable]
        proc = subprocess.Popen(
            [*cmd, "-m", "tests.support.host_worker", json.dumps(job)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs = []
        for ns in self.names:
            with contextlib.suppress(RuntimeError):  # gone already
                ip("netns", "del", ns)
        with contextlib.suppress(RuntimeError):
            ip("link", "del", self.bridge)
        atexit.unregister(self.close)


def release(go: str, marks: str, names: list[str], timeout: float = 60) -> None:
    """Start every worker's calls at once: wait until each is ready, then say go."""
    deadline = time.monotonic() + timeout
    while not all(Path(marks, f"ready-{n}").exists() for n in names):
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)
    Path(go).touch()


def results(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    """What a worker printed, once it has exited cleanly."""
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker exited with {proc.returncode}"
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def verify_log(rt: dar.Runtime) -> VerifyReport:
    """`dar verify` over the runtime's whole log: every chain and claim intact."""
    store: Any = rt.store
    return verify(
        store.events(LogFilter()),
        store.chain_heads(),
        store.checkpoints(),
        claims=store.claims(),
        purges=store.purge_records(),
    )
