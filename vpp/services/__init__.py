"""Business operations of the vpp app, one module per concern (``<entity>_<action>`` functions)."""


class Refused(RuntimeError):
    """A service said no for a reason the admin can act on; ``reason`` is that sentence.

    Views show ``reason`` as it is (a form error or a message). Subclasses name the case
    (``TokenRejected``, ``SyncBlocked`` ...); nothing is changed when one is raised.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
