"""How an invitation reaches a device user: channels, and the one message renderer.

- ``channels.py``: the registry the job flow asks (``Channel``, ``register_channel``, ``channels_for``).
- ``email.py``, ``push.py``: the built-in channels, registered here, once.
- ``message.py``: the templates' placeholders, their check, and rendering.
"""

from vpp.invitations.channels import register_channel
from vpp.invitations.email import EmailChannel
from vpp.invitations.push import PushChannel

register_channel(EmailChannel())
register_channel(PushChannel())
