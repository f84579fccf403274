"""The local stack as a server: moto on 127.0.0.1 holding the stack's resources between commands.

`make demo` and the tests keep moto inside their own process. `newsletter --local` runs one
command per process, so its stack lives here instead, for as long as this server runs:

    python -m devstack.server [--dir out/local] [--port 0] [--host 127.0.0.1]

It creates the resources of `template.yaml` (as `LocalStack.create` does), writes
`<dir>/stack.json` (the endpoint, the resource names, this process's id) once it is ready, and
serves until it gets SIGTERM or SIGINT; then it removes `stack.json`. State is in memory only;
what SES accepts is also written to `<dir>/outbox/<issue id>/*.eml`.
`start`, `running` and `stop` are what the CLI uses.

It listens on 127.0.0.1 unless told otherwise: `--host` names another address of this machine,
such as the Docker bridge's gateway, for containers to reach it (`sam local invoke`,
docs/sam-local.md). Tests and the demo never bind anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from newsletter import clock

from .stack import ROOT, LocalStack
from .template import SOURCE_TREE

# In the repository, under out/ (make clean removes it); from an install, the user's state directory.
DEFAULT_DIR = (
    ROOT / "out" / "local"
    if SOURCE_TREE
    else Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "newsletter" / "local"
)
STATE = "stack.json"
LOOPBACK = "127.0.0.1"


def state_dir() -> Path:
    return Path(os.environ.get("NEWSLETTER_LOCAL_DIR") or DEFAULT_DIR)


def _alive(pid: int) -> bool:
    try:  # a server this process started and that has exited is a zombie until reaped
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def running(directory: Path | None = None) -> dict | None:
    """The running server's state (from stack.json), or None if there is none."""
    path = (directory or state_dir()) / STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not _alive(int(state.get("pid", 0))):
        path.unlink(missing_ok=True)  # left by a server that was killed
        return None
    return state


def check_host(host: str) -> str:
    """An IPv4 address of this machine to listen on (not the wildcard), or ValueError."""
    import ipaddress
    import socket

    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"--host {host!r} is not an IPv4 address") from None
    if address.is_unspecified:
        raise ValueError(f"--host {host}: name one address of this machine, not every one")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError as exc:
            raise ValueError(f"--host {host} is not an address of this machine ({exc.strerror})") from None
    return str(address)


def start(directory: Path | None = None, *, host: str | None = None, timeout_s: float = 60.0) -> dict:
    """Start a server in the background unless one runs; return its state.

    `host`: the address to listen on (default 127.0.0.1). A server that already runs is kept if
    it listens there (or if no host is asked for); one listening elsewhere is an error.
    """
    directory = directory or state_dir()
    state = running(directory)
    if state:
        where = state.get("host", LOOPBACK)
        if host is not None and host != where:
            raise RuntimeError(
                f"the local stack already runs at {state['endpoint_url']}, not on {host}: "
                "stop it first (newsletter local stop)"
            )
        return state
    host = check_host(host) if host is not None and host != LOOPBACK else LOOPBACK
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "server.log").open("ab")
    env = dict(os.environ)
    if SOURCE_TREE:  # the repository's code, whether or not it is installed
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions"), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.server", "--dir", str(directory), "--host", host],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=directory,
        env=env,
        start_new_session=True,  # outlives the command that started it
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = running(directory)
        if state and state.get("pid") == proc.pid:
            return state
        if proc.poll() is not None:
            raise RuntimeError(
                f"the local stack did not start (exit {proc.returncode}); see {directory / 'server.log'}"
            )
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"the local stack did not start within {timeout_s:.0f} s; see {directory / 'server.log'}")


def stop(directory: Path | None = None, *, timeout_s: float = 10.0) -> bool:
    """Stop the running server; False if none ran."""
    directory = directory or state_dir()
    state = running(directory)
    if not state:
        return False
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(int(state["pid"])):
        time.sleep(0.05)
    (directory / STATE).unlink(missing_ok=True)
    return True


def serve(directory: Path, port: int = 0, host: str = LOOPBACK) -> None:
    from moto.server import ThreadedMotoServer

    # Credentials of nobody: everything goes to this server.
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ[name] = value
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound = server.get_host_and_port()
    endpoint = f"http://{bound_host}:{bound}"
    stack = LocalStack.create(endpoint_url=endpoint)
    directory.mkdir(parents=True, exist_ok=True)
    state = {**stack.state(), "host": host, "pid": os.getpid(), "started_at": clock.iso()}
    tmp = directory / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    tmp.replace(directory / STATE)  # readers never see half a file
    print(f"local stack at {endpoint} (pid {os.getpid()})", flush=True)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    outbox = threading.Thread(target=_write_outbox, args=(directory / "outbox", done), daemon=True)
    outbox.start()
    done.wait()
    outbox.join(timeout=2)
    server.stop()
    current = running(directory)
    if current and current.get("pid") == os.getpid():
        (directory / STATE).unlink(missing_ok=True)


def _write_outbox(outbox: Path, done: threading.Event, interval_s: float = 0.1) -> None:
    """What SES accepted, as .eml files under outbox/<issue id>/ (named by the Message-ID)."""
    import hashlib
    import re

    from .stack import sent_messages

    msgid = re.compile(r"^Message-ID: <[^.>]*\.([A-Za-z0-9_-]+)@", re.M | re.I)
    seen = 0
    while True:
        stopping = done.wait(interval_s)
        messages = sent_messages()
        for m in messages[seen:]:
            found = msgid.search(m.raw_data.split("\r\n\r\n", 1)[0])
            folder = outbox / (found.group(1) if found else "other")
            folder.mkdir(parents=True, exist_ok=True)
            to = (m.destinations or [""])[0]
            seen += 1
            (folder / f"{seen:06d}-{hashlib.sha256(to.encode()).hexdigest()[:10]}.eml").write_bytes(
                m.raw_data.encode("utf-8")
            )
        if stopping:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=state_dir())
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--host", default=LOOPBACK, help="the address to listen on (default %(default)s)")
    args = parser.parse_args(argv)
    serve(args.dir, args.port, args.host if args.host == LOOPBACK else check_host(args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
