"""The invitation email is written exactly as Django's own compat32 policy would write it, only faster."""

from __future__ import annotations

from email.policy import compat32

import pytest

from vpp.invitations.channels import Invitation
from vpp.invitations.email import EmailChannel
from vpp.models import VppServerSetting


class _User:
    def __init__(self, name: str, email: str):
        self.display_name, self.email = name, email


@pytest.mark.parametrize(
    ("name", "organisation", "link"),
    [
        ("Alex Example", "Acme", "https://apple.example/invite?inviteCode=abc&mt=8"),
        ("Zoë Ünïcode", "Société Générale d'Exemple", "https://apple.example/i?c=é"),
        ("A" * 90, "Org with a name long enough to fold the subject line " * 3, "https://x.example/" + "a" * 300),
        ("Tabs\tand  double  spaces ", " padded ", "https://x.example/?a=1;b=2,c"),
    ],
)
def test_invitation_bytes_match_compat32(name, organisation, link):
    setting = VppServerSetting(invitation_subject="Join {organisation} now, {user_name}")
    invitation = Invitation(1, _User(name, "someone@example.com"), link, organisation)
    message = EmailChannel().build(invitation, setting=setting).message()
    quick = message.as_bytes()
    message.policy = compat32
    assert quick == message.as_bytes()
