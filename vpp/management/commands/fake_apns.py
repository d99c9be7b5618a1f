"""manage.py fake_apns — the fake APNs (vpp/sandbox/apns.py) in the foreground, for the demo.

Trusts the demo .p8 key under var/apns/ (made on first use) unless --key-file/--key-id/--team-id
are given. Point the console at it with the environment it prints (APNS_HOST=http://...).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from vpp.sandbox.apns import FakeApnsState, ensure_demo_apns_key, serve_forever


class Command(BaseCommand):
    help = "Run a fake APNs (HTTP/2 cleartext) that checks provider tokens and records pushes."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
        parser.add_argument("--key-file", help="the .p8 (or public key PEM) to trust; default: the demo key")
        parser.add_argument("--key-id", help="the key id expected in the JWT header (kid)")
        parser.add_argument("--team-id", help="the team id expected in the JWT (iss)")
        parser.add_argument("--topic", help="the only apns-topic accepted (default: any with --key-file)")
        parser.add_argument(
            "--record",
            default=str(settings.VAR_DIR / "apns-pushes.json"),
            help="JSON file the recorded pushes are written to ('' for none)",
        )
        parser.add_argument("--unregistered", action="append", default=[], help="a device token answered 410")

    def handle(self, *args, **options):
        record = Path(options["record"]) if options["record"] else None
        if options["key_file"]:
            state = FakeApnsState.from_pem(
                key_id=options["key_id"],
                team_id=options["team_id"],
                pem=Path(options["key_file"]).read_bytes(),
                topic=options["topic"],
                record_file=record,
            )
        else:
            demo = ensure_demo_apns_key()
            state = FakeApnsState.from_pem(
                key_id=demo.key_id,
                team_id=demo.team_id,
                pem=demo.pem(),
                topic=options["topic"] or demo.topic,
                record_file=record,
            )
        for token in options["unregistered"]:
            state.unregister(token)

        def announce(port: int) -> None:
            url = f"http://{options['host']}:{port}"
            self.stdout.write(f"fake APNs listening on {url} (h2c; pushes listed at {url}/_apns/)", ending="\n")
            if not options["key_file"]:
                for name, value in demo.env(url).items():
                    self.stdout.write(f"  {name}={value}")
            self.stdout.flush()

        serve_forever(state, host=options["host"], port=options["port"], on_bound=announce)
