"""The helpdesk "channel": for a device user without an email address or a push token.

Nothing is sent. The invitation is created at Apple as for any channel, its link is stored
on the ``InvitationDelivery`` row (channel ``helpdesk``), and an admin shows it to the person
from their page (``/users/<id>/``): copied, or as a QR code scanned with the device. Revealing
the link is an audit event (vpp/person.py). It is never a setting value: only a one-user
invitation from the person page asks for it (vpp/bulk_views.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from vpp.invitations.channels import DeliveryResult, Invitation
from vpp.models import VppServerSetting

HELPDESK = "helpdesk"
HELPDESK_LABEL = "The helpdesk (link and QR code on the person's page)"


class HelpdeskChannel:
    name = HELPDESK

    def available(self) -> bool:
        return True

    def can_reach(self, user) -> bool:
        return True  # the admin hands the link over in person

    def send(self, invitations: Sequence[Invitation], *, setting: VppServerSetting) -> list[DeliveryResult]:
        """Nothing to send: the link waits on the delivery row. One ok result per invitation."""
        return [DeliveryResult(ok=True) for _ in invitations]
