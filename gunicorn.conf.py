"""gunicorn's settings (read by gunicorn from the working directory; docs/operations.md#timeouts).

The worker timeout comes from kmconsole/timeouts.py, where the budget of a web request that
talks to Apple or Redis is derived from it: change WEB_TIMEOUT (env) and both follow.
"""

from kmconsole.timeouts import WEB_TIMEOUT

bind = "0.0.0.0:8000"
workers = 3
timeout = WEB_TIMEOUT
graceful_timeout = WEB_TIMEOUT
accesslog = "-"
forwarded_allow_ips = "*"
