"""The local stack as a server: moto on 127.0.0.1 holding the stack's resources between commands.

`make demo` and the tests keep moto inside their own process. `newsletter --local` runs one
command per process, so its stack lives here instead, for as long as this server runs:

    python -m devstack.server [--dir out/local] [--port 0] [--host 127.0.0.1]

It creates the resources of `template.yaml` (as `LocalStack.create` does), writes
`<dir>/stack.json` (the endpoint, the resource names, this process's id) once it is ready, and
serves until it gets SIGTERM or SIGINT; then it removes `stack.json`. State is in memory only;
what SES accepts is also written to `<dir>/outbox/<issue id>/*.eml` (signup confirmations and
welcome mails, which belong to no issue, to `<dir>/outbox/confirmations/` and `welcomes/`).
`start`, `running` and `stop` are what the CLI uses.

It also serves the public function (signup form; confirmation, preferences, unsubscribe links) as
its Function URL would, on another free port of the same address (`public_url` in `stack.json`;
`devstack/public_http.py`); the stack's `PublicBaseUrl` is that address, so the links in its mails
lead there.

`--env FUNCTION.NAME=VALUE` (repeatable) changes a variable the template gives a function, for
this server's invocations only: tests use it to make the bot check's proof of work cheap
(`UnsubscribeFunction.ALTCHA_COST=1`). Only a variable the template sets can be changed.

It listens on 127.0.0.1 unless told otherwise: `--host` names another address of this machine,
such as the Docker bridge's gateway, for containers to reach it (`sam local invoke`,
docs/sam-local.md). Tests and the demo never bind anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def start(
    directory: Path | None = None,
    *,
    host: str | None = None,
    env: dict[str, dict[str, str]] | None = None,
    timeout_s: float = 60.0,
) -> dict:
    """Start a server in the background unless one runs; return its state.

    `host`: the address to listen on (default 127.0.0.1). A server that already runs is kept if
    it listens there (or if no host is asked for); one listening elsewhere is an error.
    `env`: {function: {variable: value}}, changes to the template's environment (`--env`, for
    tests); a server that runs with other changes is an error.
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
        if env is not None and env != state.get("env", {}):
            raise RuntimeError(
                f"the local stack already runs at {state['endpoint_url']} with other function settings: "
                "stop it first (newsletter local stop)"
            )
        return state
    host = check_host(host) if host is not None and host != LOOPBACK else LOOPBACK
    directory.mkdir(parents=True, exist_ok=True)
    settings = [f"--env={f}.{k}={v}" for f, variables in (env or {}).items() for k, v in variables.items()]
    log = (directory / "server.log").open("ab")
    env = dict(os.environ)
    if SOURCE_TREE:  # the repository's code, whether or not it is installed
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions"), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.server", "--dir", str(directory), "--host", host, *settings],
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


def serve(directory: Path, port: int = 0, host: str = LOOPBACK, env: dict[str, dict[str, str]] | None = None) -> None:
    from moto.server import ThreadedMotoServer

    from .public_http import PublicServer

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
    public = PublicServer(host)  # its port first: the stack's links lead to it
    stack = LocalStack.create(endpoint_url=endpoint, parameters={"PublicBaseUrl": public.url})
    _override(stack, env or {})
    public.start(stack)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        **stack.state(),
        "public_url": public.url,
        "host": host,
        "pid": os.getpid(),
        "started_at": clock.iso(),
        **({"env": env} if env else {}),
    }
    tmp = directory / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    tmp.replace(directory / STATE)  # readers never see half a file
    print(f"local stack at {endpoint}, public pages at {public.url} (pid {os.getpid()})", flush=True)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    outbox = threading.Thread(target=_write_outbox, args=(directory / "outbox", done), daemon=True)
    outbox.start()
    done.wait()
    public.stop()
    outbox.join(timeout=2)
    server.stop()
    current = running(directory)
    if current and current.get("pid") == os.getpid():
        (directory / STATE).unlink(missing_ok=True)


def _override(stack: LocalStack, env: dict[str, dict[str, str]]) -> None:
    """`--env`: change variables the template gives a function (checked by `parse_env`)."""
    for logical, variables in env.items():
        stack.functions[logical].environment.update(variables)


def parse_env(settings: list[str]) -> dict[str, dict[str, str]]:
    """`--env FUNCTION.NAME=VALUE` settings, each a variable the template gives that function; or ValueError."""
    from . import template as tpl

    specs = tpl.function_specs(tpl.load())
    env: dict[str, dict[str, str]] = {}
    for setting in settings:
        target, eq, value = setting.partition("=")
        logical, dot, name = target.partition(".")
        if not (eq and dot and logical and name):
            raise ValueError(f"--env {setting!r}: expected FUNCTION.NAME=VALUE")
        if logical not in specs:
            raise ValueError(f"--env {setting!r}: the template has no function {logical}")
        if name not in (specs[logical].get("Environment") or {}).get("Variables", {}):
            raise ValueError(f"--env {setting!r}: the template gives {logical} no {name} (only its own can change)")
        env.setdefault(logical, {})[name] = value
    return env


# What an outbox folder holds: the issue id of a newsletter's Message-ID (<random.issue@domain>).
# The signup mails (signup_mail: make_msgid(idstring=...), <time.pid.random.kind@domain>) belong
# to no issue: each kind has a folder of its own.
ISSUE_MSGID = re.compile(r"^Message-ID: <[^.>]*\.([A-Za-z0-9_-]+)@", re.M | re.I)
SIGNUP_MSGID = re.compile(r"^Message-ID: <\d+\.\d+\.\d+\.([A-Za-z0-9_-]+)@", re.M | re.I)
SIGNUP_FOLDERS = {"confirm": "confirmations", "welcome": "welcomes"}


def outbox_folder(raw: str) -> str:
    """The outbox folder of a raw message: its issue id, `confirmations`, `welcomes`, or `other`."""
    head = raw.split("\r\n\r\n", 1)[0]
    signup = SIGNUP_MSGID.search(head)
    if signup:
        return SIGNUP_FOLDERS.get(signup.group(1).lower(), "other")
    found = ISSUE_MSGID.search(head)
    return found.group(1) if found else "other"


def _write_outbox(outbox: Path, done: threading.Event, interval_s: float = 0.1) -> None:
    """What SES accepted, as .eml files under outbox/<folder>/ (`outbox_folder`)."""
    import hashlib

    from .stack import sent_messages

    seen = 0
    while True:
        stopping = done.wait(interval_s)
        messages = sent_messages()
        for m in messages[seen:]:
            folder = outbox / outbox_folder(m.raw_data)
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
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="FUNCTION.NAME=VALUE",
        help="change a variable the template gives a function (for tests; repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        env = parse_env(args.env)
    except ValueError as exc:
        parser.error(str(exc))
    serve(args.dir, args.port, args.host if args.host == LOOPBACK else check_host(args.host), env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
