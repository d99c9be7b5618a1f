"""Print a demo content token (.vpptoken contents) for the VPP sandbox."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from vpp.sandbox.tokens import DEFAULT_LOCATION, DEFAULT_ORG, mint_token


class Command(BaseCommand):
    help = "Print a Base64 sToken the VPP sandbox accepts (valid, expiring soon, or expired)."

    def add_arguments(self, parser):
        parser.add_argument("--org", default=DEFAULT_ORG)
        parser.add_argument("--location", default=DEFAULT_LOCATION, help="the token's location id")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--expires-in-days", type=float, default=365)
        group.add_argument("--expired", action="store_true")

    def handle(self, *args, **opts):
        token = mint_token(
            org=opts["org"], location=opts["location"], expires_in_days=opts["expires_in_days"], expired=opts["expired"]
        )
        self.stdout.write(token)
