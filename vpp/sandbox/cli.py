"""Command-line options of the sandbox, shared by ``manage.py vpp_sandbox`` and ``python -m vpp.sandbox``
(the latter needs no Django settings, handy for docker and test subprocesses)."""

from __future__ import annotations

import _thread
import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from typing import Any, TextIO

from vpp.sandbox.options import Options
from vpp.sandbox.server import SandboxServer
from vpp.sandbox.service import Sandbox


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 = any free port (see --port-file)")
    parser.add_argument("--state", default="var/sandbox.json", help="state file ('' keeps state in memory)")
    parser.add_argument("--page-size", type=int)
    parser.add_argument("--max-users", type=int, help="limits.maxUsers")
    parser.add_argument("--max-revoke", type=int, help="limits.maxRevokeClientUserIds")
    parser.add_argument("--rps", type=int, help="limits.maxRequestPerSecond (advertised)")
    parser.add_argument("--enforce-rps", action="store_true", help="answer 429/9646 beyond the advertised rps")
    parser.add_argument("--limits", help="JSON map merged into limits, e.g. '{\"maxAssets\": 10}'")
    parser.add_argument("--pending-seconds", type=float, help="how long async events stay PENDING")
    parser.add_argument("--latency", type=float, help="seconds added to every API request")
    parser.add_argument("--fail-share", type=float, help="share of API requests answered 5xx")
    parser.add_argument("--async-failure-share", type=float, help="share of async items failing with 9603")
    parser.add_argument("--drop-notifications", action="store_true")
    parser.add_argument("--errors-with-http-200", action="store_true")
    parser.add_argument("--invite-base-url", help="public base URL of the invitation page")
    parser.add_argument("--allow-http-notifications", action="store_true", help="allow http:// to any host")
    parser.add_argument("--auto-associate-adam-id", help="app assigned when an invitation is accepted ('' = none)")
    parser.add_argument("--options", help="JSON map of any further Options fields (see vpp/sandbox/options.py)")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process goes away")
    # The fake APNs (vpp/sandbox/apns.py) in the same process, for the push invitation demo.
    parser.add_argument("--apns-port", type=int, help="also serve the fake APNs (h2c) on this port (0 = free port)")
    parser.add_argument("--apns-port-file", help="write the fake APNs's bound port here once listening")
    parser.add_argument("--apns-key-dir", default="var", help="the demo .p8 key lives in DIR/apns/ (made if missing)")


def build_options(opts: dict[str, Any]) -> Options:
    changes: dict[str, Any] = json.loads(opts["options"]) if opts.get("options") else {}
    limits = json.loads(opts["limits"]) if opts.get("limits") else {}
    named_limits = (("max_users", "maxUsers"), ("max_revoke", "maxRevokeClientUserIds"), ("rps", "maxRequestPerSecond"))
    for key, name in named_limits:
        if opts.get(key) is not None:
            limits[name] = opts[key]
    if limits:
        changes["limits"] = {**changes.get("limits", {}), **limits}
    for key in (
        "page_size",
        "pending_seconds",
        "latency",
        "fail_share",
        "async_failure_share",
        "invite_base_url",
        "auto_associate_adam_id",
    ):
        if opts.get(key) is not None:
            changes[key] = opts[key]
    for key in ("drop_notifications", "errors_with_http_200", "allow_http_notifications"):
        if opts.get(key):
            changes[key] = True
    options = Options().updated(changes)
    if opts.get("enforce_rps"):
        options = options.updated({"rps_limit": options.limits["maxRequestPerSecond"]})
    return options


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _watch_parent(parent: int) -> None:
    """A test run killed hard must not leave a sandbox behind."""
    while os.getppid() == parent:
        time.sleep(0.5)
    _thread.interrupt_main()


def run(opts: dict[str, Any], stdout: TextIO = sys.stdout) -> None:
    """Serve until Ctrl-C or SIGTERM; the state file is flushed on the way out."""
    options = build_options(opts)
    server = SandboxServer(Sandbox(options, state_path=opts["state"] or None), host=opts["host"], port=opts["port"])
    if opts.get("port_file"):
        with open(opts["port_file"], "w") as handle:
            handle.write(str(server.port))
    apns = None
    if opts.get("apns_port") is not None:
        from vpp.sandbox.apns import start_for_sandbox

        apns = start_for_sandbox(
            host=opts["host"],
            port=opts["apns_port"],
            key_dir=opts["apns_key_dir"],
            port_file=opts.get("apns_port_file"),
        )
    signal.signal(signal.SIGTERM, _interrupt)
    if opts.get("exit_with_parent"):
        threading.Thread(target=_watch_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    stdout.write(f"VPP sandbox on {server.base_url} (state: {opts['state'] or 'memory'})\n")
    if apns:
        stdout.write(f"fake APNs on {apns.base_url} (pushes: {apns.base_url}/_apns/)\n")
    stdout.flush()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        if apns:
            apns.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vpp.sandbox", description="kmconsole VPP sandbox")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run(vars(args))
    except (ValueError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
