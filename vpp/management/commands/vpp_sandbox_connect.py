"""Point the console's VPP setting at a running sandbox with a generated demo token."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from vpp.sandbox.demo import DEMO_ORG, demo_connect
from vpp.sandbox.tokens import DEFAULT_LOCATION


class Command(BaseCommand):
    help = "Store a demo content token (encrypted) and the sandbox URL in the VPP server setting."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8089/mdm/v2", help="the sandbox's API base URL")
        parser.add_argument("--org", default=DEMO_ORG)
        parser.add_argument("--location", default=DEFAULT_LOCATION)
        parser.add_argument("--force", action="store_true", help="replace even a real (non-sandbox) token")

    def handle(self, *args, **opts):
        if demo_connect(api_base_url=opts["url"], org=opts["org"], location=opts["location"], force=opts["force"]):
            self.stdout.write(f"VPP setting points at the sandbox {opts['url']}")
        else:
            self.stderr.write("A real content token is configured; left it alone (use --force to replace it).")
