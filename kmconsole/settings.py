"""kmconsole settings: one module, everything from the environment.

See README.md ("Configuration") for the variables. Helpers in ``kmconsole.env`` fail
loudly, naming the variable, when a value is malformed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from kmconsole import private_redis
from kmconsole.env import env_bool, env_int, env_list, env_str, env_url
from kmconsole.timeouts import BROKER_CONNECT_TIMEOUT, INTERACTIVE_BUDGET, WEB_TIMEOUT

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("KMCONSOLE_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    # Development only: a per-checkout key kept under var/, never committed.
    from django.core.management.utils import get_random_secret_key

    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(get_random_secret_key())
    return path.read_text().strip()


SECRET_KEY = _secret_key()


def _encryption_keys() -> list[str]:
    keys = env_list("KMCONSOLE_ENCRYPTION_KEYS")
    if keys or not DEBUG:
        return keys
    # Development only, like the secret key above.
    from cryptography.fernet import Fernet

    path = VAR_DIR / "encryption_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
    return [path.read_text().strip()]


# Keys for secrets at rest (content token, APNs key, SMTP password); see vpp/secrets.py.
KMCONSOLE_ENCRYPTION_KEYS = _encryption_keys()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
    "ninja",
    "kmconsole",
    "kmconsole.api",
    "accounts",
    "users",
    "vpp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "kmconsole.middleware.SessionIdleRefreshMiddleware",
    "django.middleware.common.CommonMiddleware",
    "vpp.middleware.BulkSelectionMiddleware",  # before CSRF: it is the first to read request.POST
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "kmconsole.middleware.HtmxLoginRedirectMiddleware",
    "kmconsole.middleware.HtmxMessagesMiddleware",
    "kmconsole.middleware.NoStoreMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "kmconsole.urls"
WSGI_APPLICATION = "kmconsole.wsgi.application"
ASGI_APPLICATION = "kmconsole.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "kmconsole.context_processors.console",
                "vpp.context_processors.token_banner",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
# SQLite under var/ by default. WAL + a busy timeout + IMMEDIATE transactions let the
# web process and a Celery worker write at the same time without "database is locked".
DATABASE_URL = env_url("DATABASE_URL", schemes=("postgres", "postgresql", "sqlite"))
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "kmconsole.sqlite3",
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
    }
    # A file, not :memory:, so a real Celery worker and the sandbox can share the test DB.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth and sessions -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "users:list"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)
# Idle timeout: kmconsole.middleware.SessionIdleRefreshMiddleware extends a session at most
# once per SESSION_REFRESH_SECONDS (not a write per request, as SESSION_SAVE_EVERY_REQUEST would).
SESSION_REFRESH_SECONDS = 60
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from <body hx-headers>, not the cookie

# --- Login throttling (django-axes; kmconsole/login_throttle.py, docs/roles.md "Logins") ------
# Per address and per account, each with its limit; the address limit is the lower one, so one
# address is locked out before it could lock any admin out for everyone else.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out try before checking the password
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 10, minimum=1)
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 30, minimum=2)
if LOGIN_FAILURES_PER_ACCOUNT <= LOGIN_FAILURES_PER_ADDRESS:
    raise ImproperlyConfigured(
        "LOGIN_FAILURES_PER_ACCOUNT must be above LOGIN_FAILURES_PER_ADDRESS (else one address can lock an admin out)"
    )
AXES_HANDLER = "kmconsole.login_throttle.ConsoleAxesHandler"
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # this order: ConsoleAxesHandler reads them so
AXES_FAILURE_LIMIT = LOGIN_FAILURES_PER_ADDRESS
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # tries while locked out neither count nor extend it
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "kmconsole.login_throttle.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # successful logins: User.last_login (Setting › Administrators) is enough
# The client's address: REMOTE_ADDR, or behind the reverse proxy the right-most X-Forwarded-For
# entry, the one the proxy appended (django-ipware); never a value the client could choose.
# Without this, every login would come from the proxy's address and share one lockout.
if env_bool("BEHIND_PROXY", False):
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    AXES_IPWARE_PROXY_ORDER = "right-most"
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)

# --- Security (production defaults; DEBUG relaxes the HTTPS ones) ------------------------
_https = env_bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _https)
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _https else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS", [])

# django-csp 4: no inline script or style anywhere; htmx's own inline indicator style is
# switched off in base.html (htmx.config.includeIndicatorStyles = false via meta tag).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

# --- I18N / static -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env_bool("STATIC_MANIFEST", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Email --------------------------------------------------------------------------------
# Default: a file outbox under var/ that the console can show (the embedded default).
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = Path(env_str("EMAIL_FILE_PATH", str(VAR_DIR / "outbox")))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "kmconsole <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on")

# --- Redis and Celery -------------------------------------------------------------------
# Redis is Celery's broker and holds what every process must share: the Apple rate limit and
# Retry-After pause per content token, the APNs provider token. Without REDIS_URL (the embedded
# default, `make run`) it is the private redis-server that run_console starts under var/
# (kmconsole/private_redis.py): the same code path as production, see docs/embedded.md.
REDIS_URL = env_url("REDIS_URL", schemes=("redis", "rediss", "unix"))
EMBEDDED_REDIS = not REDIS_URL
if EMBEDDED_REDIS:
    REDIS_URL = private_redis.socket_url(VAR_DIR)
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=600)
CELERY_BROKER_URL = private_redis.celery_broker_url(REDIS_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "socket_timeout": 5,
    # A web request publishing a job must answer within its budget (kmconsole/timeouts.py).
    "socket_connect_timeout": BROKER_CONNECT_TIMEOUT,
}
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "kmconsole")
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True  # progress lives in the database, not in a result backend
CELERY_TASK_ACKS_LATE = True  # every task is idempotent (claims rows with conditional UPDATEs)
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # requeue when a worker dies; attempts are capped
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=10)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300, minimum=15)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 30
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
if CELERY_TASK_TIME_LIMIT >= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured("CELERY_TASK_TIME_LIMIT must stay below CELERY_VISIBILITY_TIMEOUT")
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_SOFT_TIME_LIMIT must stay below CELERY_TASK_TIME_LIMIT")
# Beat runs one static entry per periodic concern; schedules themselves live in the
# database (see vpp/services/schedule.py), so this dict never changes at run time.
# The VPP sync tick claims a due run from the SyncSchedule row (vpp/services/schedule.py);
# ``expires`` < 60 s so ticks queued while no worker runs are dropped, not replayed in a burst.
CELERY_BEAT_SCHEDULE: dict = {
    # Re-dispatches jobs whose worker died or whose enqueue failed (vpp/jobs/engine.py).
    "vpp-jobs-sweep": {"task": "vpp.jobs_sweep", "schedule": 60.0},
    "vpp-sync-tick": {"task": "vpp.sync_tick", "schedule": 60.0, "options": {"expires": 55}},
    "vpp-token-health": {"task": "vpp.token_health_check", "schedule": 24 * 3600.0, "options": {"expires": 3600}},
    # Webhook deliveries a broker outage lost (kmconsole/api/webhooks.py).
    "api-webhooks-sweep": {"task": "api.webhooks_sweep", "schedule": 60.0, "options": {"expires": 55}},
}

# --- REST API (docs/api.md) ----------------------------------------------------------------
API_RATE_LIMIT = env_int("API_RATE_LIMIT", 600, minimum=1)  # calls per token per minute
# Webhook endpoints must be https://; plain http:// to loopback only when this is on (local receivers).
WEBHOOK_ALLOW_HTTP_LOOPBACK = DEBUG

# --- Apple VPP -----------------------------------------------------------------------------
# gunicorn's timeout and the budget of a web request that calls Apple or Redis (kmconsole/timeouts.py).
WEB_REQUEST_TIMEOUT = WEB_TIMEOUT
VPP_INTERACTIVE_BUDGET = INTERACTIVE_BUDGET
VPP_API_BASE_URL = env_url("VPP_API_BASE_URL", "https://vpp.itunes.apple.com/mdm/v2", schemes=("https", "http"))
# Apple asks for >= 30 s between status polls of a PENDING event; the sandbox allows less.
VPP_EVENT_POLL_INTERVAL = env_int("VPP_EVENT_POLL_INTERVAL", 30, minimum=1)
# Apple's maxRequestPerSecond is spread over this many milliseconds (vpp/apple/ratelimit.py says
# why a little more than 1000): widen it if Apple still answers 429 because of network jitter.
VPP_RATE_LIMIT_WINDOW_MS = env_int("VPP_RATE_LIMIT_WINDOW_MS", 1050, minimum=1000, maximum=10000)
# `make run` starts the VPP sandbox (vpp/sandbox/) on these loopback ports; VPP_SANDBOX=0 leaves it out.
VPP_SANDBOX = env_bool("VPP_SANDBOX", True)
VPP_SANDBOX_PORT = env_int("VPP_SANDBOX_PORT", 8089, minimum=0, maximum=65535)
VPP_SANDBOX_APNS_PORT = env_int("VPP_SANDBOX_APNS_PORT", 8090, minimum=0, maximum=65535)
# --- Apple Business API (people and devices; vpp/apple/business.py) ----------------------------
APPLE_BUSINESS_API_URL = env_url("APPLE_BUSINESS_API_URL", "https://api-business.apple.com", schemes=("https", "http"))
APPLE_BUSINESS_TOKEN_URL = env_url(
    "APPLE_BUSINESS_TOKEN_URL", "https://account.apple.com/auth/oauth2/token", schemes=("https", "http")
)
# Apple publishes no limit; ~20 GET/minute was measured by an implementer (docs/apple-business.md#rate-limit).
APPLE_BUSINESS_REQUESTS_PER_MINUTE = env_int("APPLE_BUSINESS_REQUESTS_PER_MINUTE", 20, minimum=1)
# `make run` starts the Apple Business sandbox (vpp/business_sandbox/) on this port; 0 leaves it out.
APPLE_BUSINESS_SANDBOX_PORT = env_int("APPLE_BUSINESS_SANDBOX_PORT", 8091, minimum=0, maximum=65535)
# Bulk jobs: users per chunk task, attempts per user, and how long a silent job may stay
# silent before the sweeper hands its work to another worker. A running task heartbeats from a
# thread every VPP_JOB_STALE_SECONDS / 6 s whatever it waits for, and every worker sweeps every
# VPP_JOB_SWEEP_SECONDS (no beat needed): a dead worker's work is taken over within
# stale + sweep seconds (docs/operations.md#recovery).
VPP_JOB_CHUNK_SIZE = env_int("VPP_JOB_CHUNK_SIZE", 1000, minimum=1)
VPP_JOB_MAX_ATTEMPTS = env_int("VPP_JOB_MAX_ATTEMPTS", 8, minimum=1)
VPP_JOB_STALE_SECONDS = env_int("VPP_JOB_STALE_SECONDS", 30, minimum=1)
VPP_JOB_SWEEP_SECONDS = env_int("VPP_JOB_SWEEP_SECONDS", 10, minimum=1)
# A create whose answer was lost (worker died) is sent again only if Apple still shows no such
# user this long after it was sent (Apple: retry a request still PENDING after 10 minutes).
VPP_CREATE_RECHECK_SECONDS = env_int("VPP_CREATE_RECHECK_SECONDS", 600, minimum=1)

# --- Apple Push Notification service (invitations to our agent app; vpp/apple/apns.py) ----------
# APNS_HOST: https://api.push.apple.com (production apps), https://api.sandbox.push.apple.com
# (development builds), or http://127.0.0.1:PORT for the local fake (manage.py fake_apns).
APNS_HOST = env_url("APNS_HOST", "https://api.push.apple.com", schemes=("https", "http"))
APNS_KEY_ID = env_str("APNS_KEY_ID", "")  # the .p8 key's 10-character Key ID
APNS_TEAM_ID = env_str("APNS_TEAM_ID", "")  # the developer account's 10-character Team ID
APNS_TOPIC = env_str("APNS_TOPIC", "")  # the agent app's bundle id
# The .p8 key itself (PEM text), or APNS_KEY_FILE=/path/AuthKey_XXXXXXXXXX.p8 (env.py reads
# NAME_FILE). A malformed key stops start-up (system check vpp.E101).
APNS_KEY = env_str("APNS_KEY", "")
# Provider tokens are reused this long and shared by all workers (Apple: 20-60 minutes).
APNS_TOKEN_REFRESH_SECONDS = env_int("APNS_TOKEN_REFRESH_SECONDS", 40 * 60, minimum=20 * 60, maximum=50 * 60)
APNS_TIMEOUT = env_int("APNS_TIMEOUT", 10, minimum=1, maximum=120)

# --- Logging -------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # axes: lockouts and failed logins (WARNING), not every successful login.
    "loggers": {"django.db.backends": {"level": "INFO"}, "axes": {"level": "WARNING"}},
}
