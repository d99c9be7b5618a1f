"""How an invitation reaches a device user: channels, and the one message renderer.

- ``channels.py``: the registry the job flow asks (``Channel``, ``register_channel``, ``channels_for``).
- ``email.py``, ``push.py``: the built-in channels, registered here, once; ``helpdesk.py``: no
  message, the link is shown on the person's page (one-user invitations from there only).
- ``message.py``: the templates' placeholders, their check, and rendering.
"""

from vpp.invitations.channels import register_channel
from vpp.invitations.email import EmailChannel
from vpp.invitations.helpdesk import HelpdeskChannel
from vpp.invitations.push import PushChannel

register_channel(EmailChannel())
register_channel(PushChannel())
register_channel(HelpdeskChannel())
