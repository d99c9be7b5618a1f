"""The web server's timeout and the budget of a web request that talks to Apple or Redis, set
together here (docs/operations.md#timeouts).

``WEB_TIMEOUT`` (env, seconds, default 30) is gunicorn's worker timeout (``gunicorn.conf.py``
reads it from here). A page that calls Apple ("Check with Apple now", a token upload, the
takeover, the notification setup) or publishes to the broker ("Sync now", a bulk action) gets
``INTERACTIVE_BUDGET`` seconds for all of it: a quarter of the web timeout, so the answer, the
database work and the page itself fit well inside it. Background jobs keep their own, longer
budgets (docs/vpp-jobs.md#retries-and-waits).

Plain Python (no Django): gunicorn imports it before Django is set up.
"""

from __future__ import annotations

from kmconsole.env import env_int

WEB_TIMEOUT: int = env_int("WEB_TIMEOUT", 30, minimum=8, maximum=600)
INTERACTIVE_BUDGET: float = WEB_TIMEOUT / 4
# Connecting to the broker (Redis) from a web request: three tries (CELERY_TASK_PUBLISH_RETRY_POLICY)
# must fit in the budget.
BROKER_CONNECT_TIMEOUT: float = min(5.0, INTERACTIVE_BUDGET / 4)
