"""``python -m vpp.business_sandbox``: the Apple Business API sandbox as its own process.

Needs no Django settings. ``--account-file`` registers the API account whose JSON
({"client_id", "key_id", "public_key"}) it holds (``make run`` writes one under var/).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading

from vpp.business_sandbox.seed import demo_organisation
from vpp.business_sandbox.server import BusinessSandboxServer
from vpp.business_sandbox.service import BusinessSandbox
from vpp.sandbox.cli import _interrupt, _watch_parent  # the VPP sandbox's: stop on SIGTERM or when the parent goes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vpp.business_sandbox", description="Apple Business API sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091, help="0 = any free port (see --port-file)")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--people", type=int, default=60, help="people in the demo organisation")
    parser.add_argument("--devices", type=int, help="devices (default: one per person)")
    parser.add_argument("--name", default="Example Corp", help="the organisation's name")
    parser.add_argument("--requests-per-minute", type=int, help="answer 429 with Retry-After beyond this rate")
    parser.add_argument("--account-file", help="JSON of an API account to register")
    parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args(argv)
    sandbox = BusinessSandbox(requests_per_minute=args.requests_per_minute)
    sandbox.org = demo_organisation(args.people, name=args.name, devices=args.devices)
    if args.account_file:
        with open(args.account_file) as handle:
            account = json.load(handle)
        sandbox.register_account(account["client_id"], account["key_id"], account["public_key"])
    server = BusinessSandboxServer(sandbox, host=args.host, port=args.port)
    if args.port_file:
        with open(args.port_file, "w") as handle:
            handle.write(str(server.port))
    signal.signal(signal.SIGTERM, _interrupt)
    if args.exit_with_parent:
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    sys.stdout.write(f"Apple Business sandbox on {server.base_url} ({len(sandbox.org.users)} people)\n")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
