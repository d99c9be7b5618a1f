"""Run the VPP sandbox (an imitation of Apple's v2 service) on its own port. Options: vpp/sandbox/cli.py."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from vpp.sandbox import cli


class Command(BaseCommand):
    help = "Serve the VPP sandbox (Apple's App and Book Management v2 imitation) on HOST:PORT."

    def add_arguments(self, parser):
        cli.add_arguments(parser)

    def handle(self, *args, **opts):
        try:
            cli.run(opts, self.stdout)
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
