"""Business operations of the vpp app, one module per concern (``<entity>_<action>`` functions)."""
