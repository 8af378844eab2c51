"""LeukWeb settings, all read from the environment.

The defaults run the whole product with no server at all (SQLite and Celery's
filesystem broker under ``var/``); production sets DATABASE_URL and
CELERY_BROKER_URL or REDIS_URL. Every variable is listed in README.md.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """Read a setting; NAME_FILE (a path) wins, so secrets can come from files."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: str) -> bool:
    value = env(name, default)
    if value not in ("True", "False"):
        raise ImproperlyConfigured(f"{name} must be True or False, not {value!r}")
    return value == "True"


def envint(name: str, default: str) -> int:
    value = env(name, default)
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from exc


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105

# Everything the embedded mode writes (database, broker queue, media, caches).
VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var")))
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
# The embedded mode (SQLite) serves plain HTTP on this machine's loopback only; a
# deployment's shared database comes with its own secret key, hosts and HTTPS.
EMBEDDED = DATABASE_URL.startswith("sqlite:")


def embedded_secret_key(var_dir: Path) -> str:
    """A key made once for this install and kept in VAR_DIR (readable by its owner only)."""
    path = var_dir / "secret-key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


# Development mode (debug pages that list every URL and show tracebacks) is an opt-in.
DEBUG = envbool("DEBUG", "False")
SECRET_KEY = env("SECRET_KEY") or (
    DEV_SECRET_KEY if DEBUG else embedded_secret_key(VAR_DIR) if EMBEDDED else ""
)
LOOPBACK_HOSTS = "localhost,127.0.0.1,[::1]"
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", LOOPBACK_HOSTS if DEBUG or EMBEDDED else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

if not DEBUG:
    if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("DEBUG=False needs a real SECRET_KEY (32+ characters)")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DEBUG=False needs ALLOWED_HOSTS")

# A deployment is served over HTTPS, by itself or behind a proxy that ends TLS and says so
# in X-Forwarded-Proto (the proxy must set or drop that header, never pass on a client's).
# The embedded run and development mode are plain HTTP on loopback: a secure cookie would
# never come back and a redirect to https:// would lead nowhere.
HTTPS = envbool("HTTPS", "False" if DEBUG or EMBEDDED else "True")
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", str(HTTPS))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "True")
    SECURE_HSTS_SECONDS = envint("HSTS_SECONDS", str(365 * 24 * 3600))
    # Both on, as `check --deploy` asks; a hospital domain whose other hosts still serve
    # plain HTTP turns them off (README, "Headers and errors").
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("HSTS_INCLUDE_SUBDOMAINS", "True")
    SECURE_HSTS_PRELOAD = envbool("HSTS_PRELOAD", "True")
# Load balancers and orchestrators probe over plain HTTP; the answer is the status alone.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"


INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # PostgreSQL's index types (the trigram index for `?q=`): harmless on SQLite.
    "django.contrib.postgres",
    "rest_framework",
    # Sign-in libraries, named for the Django admin in authentication.apps.
    "authentication.apps.ApiTokensConfig",
    "django_otp",
    "authentication.apps.TwoStepVerificationConfig",
    "django_otp.plugins.otp_static",
    "authentication.apps.LockoutsConfig",
    "django_filters",
    "drf_spectacular",
    "csp",
    # Old and new values of the clinical records (their ``history``), with who changed them.
    "simple_history",
    # In the order of docs/architecture.md: each app imports only those above it.
    "accounts",
    "audit",
    "authentication",
    "cases",
    "inference",
    "reviews",
    "registry",
    "clinic",
    "leukweb",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Below WhiteNoise (static files stay cacheable), above everything that may answer
    # for a signed-in user or the API.
    "leukweb.middleware.NoStoreMiddleware",
    # Above CSRF and every other middleware that may answer an API request with HTML.
    "leukweb.middleware.ApiErrorShapeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The request's user is the actor of the audit events and field history it causes.
    "audit.context.ActingUserMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "authentication.middleware.SessionTimeoutMiddleware",
    "authentication.middleware.SecondFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "leukweb.middleware.StoreUnavailableMiddleware",
    "leukweb.middleware.MethodNotAllowedPageMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Scripts and styles come from our own static files only: no inline <script>, no on*=
# handler, no style= attribute (static/js/behaviours.js applies data-* values instead), so
# that markup an attacker slipped into a page can run nothing.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Browser features that no LeukWeb page uses are off for every page and anything it embeds.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "encrypted-media",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "usb",
        "xr-spatial-tracking",
    )
}

ROOT_URLCONF = "leukweb.urls"
# A refused CSRF check: the site's 403 page, or the API's JSON error under /api/.
CSRF_FAILURE_VIEW = "leukweb.views.csrf_failure"
WSGI_APPLICATION = "leukweb.wsgi.application"
ASGI_APPLICATION = "leukweb.asgi.application"

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
                "authentication.context_processors.session_timeout",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=envint("DB_CONN_MAX_AGE", "60"),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker write to the same file: wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    # A file, not memory, so that a real worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Every path that sets a password runs these (the user manager too, so commands do).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": envint("PASSWORD_MIN_LENGTH", "12")},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Argon2 for every new or changed password; older hashes are upgraded at the next login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
# django-axes refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Sessions on shared ward computers: they end with the browser, after SESSION_IDLE_TIMEOUT
# seconds without a request from the person (background refreshes do not count), and
# SESSION_ABSOLUTE_TIMEOUT seconds after the login whatever happens.
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_IDLE_TIMEOUT = envint("SESSION_IDLE_TIMEOUT", "1800")
SESSION_ABSOLUTE_TIMEOUT = envint("SESSION_ABSOLUTE_TIMEOUT", "43200")
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_TIMEOUT

# Second factor (TOTP with recovery codes): reviewers and administrators always, everyone
# with SECOND_FACTOR_REQUIRED_FOR_ALL, and clinicians who turned it on.
SECOND_FACTOR_REQUIRED_FOR_ALL = envbool("SECOND_FACTOR_REQUIRED_FOR_ALL", "False")
OTP_TOTP_ISSUER = env("SECOND_FACTOR_ISSUER", "LeukWeb")
RECOVERY_CODES = 10

# Lockout after LOGIN_FAILURE_LIMIT failed logins within LOGIN_COOLOFF_MINUTES, for that
# username and, separately, for that address (LOGIN_LOCKOUT_BY), on every login path.
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", "5")
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_COOLOFF_MINUTES", "15"))
AXES_LOCKOUT_PARAMETERS = envlist("LOGIN_LOCKOUT_BY", "username,ip_address")
if not AXES_LOCKOUT_PARAMETERS or set(AXES_LOCKOUT_PARAMETERS) - {"username", "ip_address"}:
    raise ImproperlyConfigured("LOGIN_LOCKOUT_BY takes username, ip_address or both")
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "authentication.views.lockout_response"
# Logins are in the audit log; the admin lists lockouts through the authentication app.
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ADMIN = False

LANGUAGE_CODE = "en-gb"
# Dates and times in one format everywhere (leukweb/formats): "2026-12-01 18:58 UTC".
FORMAT_MODULE_PATH = ["leukweb.formats"]
TIME_ZONE = env("TIME_ZONE", "UTC")
# Every string is English; none is marked for translation.
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(VAR_DIR / "media")))
MODELS_ROOT = Path(env("MODELS_ROOT", str(BASE_DIR / "models")))
# Labelled image sets (<root>/<set>/<class>/*) that administrators may evaluate models on
# from the registry page; workers read them, so in production they mount this folder too.
EVALUATION_DATA_ROOT = Path(env("EVALUATION_DATA_ROOT", str(VAR_DIR / "evaluation-sets")))


def file_storage(kind: str, *, root: Path) -> dict:
    """MEDIA_STORAGE / MODELS_STORAGE: this machine's folder, or an S3-compatible store that
    web and workers on other machines share (one private bucket, a prefix per kind)."""
    choice = env(f"{kind.upper()}_STORAGE", "filesystem")
    if choice == "filesystem":
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": root},
        }
    if choice != "s3":
        raise ImproperlyConfigured(
            f"{kind.upper()}_STORAGE must be filesystem or s3, not {choice!r}"
        )
    bucket = env("S3_BUCKET")
    if not bucket:
        raise ImproperlyConfigured(f"{kind.upper()}_STORAGE=s3 needs S3_BUCKET")
    style = env("S3_ADDRESSING_STYLE", "auto")
    if style not in ("auto", "path", "virtual"):
        raise ImproperlyConfigured(
            f"S3_ADDRESSING_STYLE must be auto, path or virtual, not {style!r}"
        )
    encryption: dict[str, str] = {}
    if envbool("S3_SERVER_SIDE_ENCRYPTION", "False"):
        kms_key = env("S3_KMS_KEY_ID")
        encryption = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key}
            if kms_key
            else {"ServerSideEncryption": "AES256"}
        )
    return {
        "BACKEND": "leukweb.storage.ObjectStorage",
        "OPTIONS": {
            "bucket_name": bucket,
            "location": "/".join(p for p in (env("S3_PREFIX").strip("/"), kind) if p),
            # Empty: AWS S3 itself, and boto3's own chain for credentials and region
            # (environment, instance profile, web identity).
            "endpoint_url": env("S3_ENDPOINT_URL") or None,
            "region_name": env("S3_REGION") or None,
            "access_key": env("S3_ACCESS_KEY_ID") or None,
            "secret_key": env("S3_SECRET_ACCESS_KEY") or None,
            "addressing_style": None if style == "auto" else style,
            "signature_version": "s3v4",
            # A key is written once: a name that exists gets another, never overwritten.
            "file_overwrite": False,
            # Objects are private (no ACL is sent: the bucket's own, private, applies) and
            # only ever served by the access-checked views, which stream them.
            "default_acl": None,
            "querystring_auth": True,
            "object_parameters": encryption,
            # A download larger than this waits in a temporary file, not in memory.
            "max_memory_size": 8 * 1024 * 1024,
        },
    }


# No MEDIA_URL is routed: images are served by views that check access.
STORAGES = {
    "default": file_storage("media", root=MEDIA_ROOT),
    "models": file_storage("models", root=MODELS_ROOT),
    # A deployment runs collectstatic (the Docker image does) and serves hashed names;
    # the embedded run serves the files where they are.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or EMBEDDED
        else "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}
WHITENOISE_USE_FINDERS = DEBUG or EMBEDDED

# Smear uploads: a bigger file, or an image with more pixels (a decompression
# bomb), is refused before its pixels are decoded.
UPLOAD_MAX_BYTES = envint("UPLOAD_MAX_BYTES", str(50 * 1024 * 1024))
UPLOAD_MAX_PIXELS = envint("UPLOAD_MAX_PIXELS", "40000000")
UPLOAD_MAX_FILES = envint("UPLOAD_MAX_FILES", "50")
# Pixels of all the images of one request together, read from their headers before any is
# decoded: 50 small files each claiming 6000 x 6600 once held a web worker for 18 s.
UPLOAD_MAX_REQUEST_PIXELS = envint("UPLOAD_MAX_REQUEST_PIXELS", "200000000")
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES

# Seconds before a task is killed; evaluations of a whole labelled set may take longer.
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", "600")
EVALUATION_TIME_LIMIT = envint("EVALUATION_TIME_LIMIT", "3600")
# Half a minute before the hard limit a task is told (SoftTimeLimitExceeded), so that it
# hands its claims back instead of being killed holding them.
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30

REDIS_URL = env("REDIS_URL", "")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_QUEUE_DIR = VAR_DIR / "celery"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_QUEUE_DIR / "queue"),
        "data_folder_out": str(CELERY_QUEUE_DIR / "queue"),
        "control_folder": str(CELERY_QUEUE_DIR / "control"),
        "store_processed": False,
        # The worker lists the queue folder this often while idle (kombu's default is
        # once a second, which was the p95 of upload-to-prediction); a listing is cheap.
        "polling_interval": 0.1,
    }
    _default_backend = f"file://{CELERY_QUEUE_DIR / 'results'}"
else:
    # Redis hands an unacknowledged message to another worker after this many seconds. A
    # live worker holds an analysis message at most for the task time limit plus the
    # longest retry countdown (120 s), so an analysis that still runs is not delivered
    # twice; an evaluation running longer may be, and its claim makes the second delivery
    # leave it alone. A killed worker's analyses do not wait for this: their claims lapse
    # and the sweep queues them again within seconds.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 180}
    _default_backend = CELERY_BROKER_URL
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", _default_backend)
# API throttle counters, shared by every web process: Redis when there is one.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": VAR_DIR / "cache",
    }
}
# The agreement page's counts stay in the cache until the next sign-off, or this long.
AGREEMENT_CACHE_SECONDS = envint("AGREEMENT_CACHE_SECONDS", "300")
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "leukweb")
# The sweep has a queue of its own, so that a backlog of analyses cannot delay it. Grad-CAM
# needs TensorFlow, which the analysis workers do not load: its task has a queue of its
# own too, consumed by heatmap workers (and by the embedded worker of `make run`). Both
# routes read these settings (leukweb.celery.task_route).
CELERY_SWEEP_QUEUE = env("CELERY_SWEEP_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}-sweep")
CELERY_HEATMAP_QUEUE = env("CELERY_HEATMAP_QUEUE", "heatmaps")
CELERY_TASK_ROUTES = ("leukweb.celery.task_route",)
# A task is acknowledged only once it has finished, so a killed worker's task is
# delivered again; tasks are idempotent, which makes that safe.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task still running when the broker connection is lost is cancelled: its message was
# not acknowledged and is delivered again (Celery 6's default), and its claims come back
# through the sweep. SIGTERM is a warm shutdown: the running task finishes (each message
# is short; docker-compose.yml's stop_grace_period is the bound), no new one is taken.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request that queues work must not hang on a dead broker: fail fast, the
# sweeper re-queues what is left pending.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The sweep (inference.services.sweep) runs this often and queues again, each time:
# - images whose worker claim lapsed: a worker renews its claims every quarter of
#   INFERENCE_CLAIM_LEASE seconds while it works, so a dead one's lapse within that;
# - pending images waiting longer than INFERENCE_REQUEUE_GRACE seconds while nothing waits
#   in the broker's queue (their message was lost: a broker restarted without its data);
# - pending images waiting longer than INFERENCE_STALE_AFTER seconds whatever the queue
#   holds (a lost message behind a backlog). The analysis task is idempotent.
INFERENCE_SWEEP_EVERY = envint("INFERENCE_SWEEP_EVERY", "10")
INFERENCE_CLAIM_LEASE = envint("INFERENCE_CLAIM_LEASE", "20")
INFERENCE_REQUEUE_GRACE = envint("INFERENCE_REQUEUE_GRACE", "30")
INFERENCE_STALE_AFTER = envint("INFERENCE_STALE_AFTER", "600")
CELERY_BEAT_SCHEDULE = {
    "inference-sweep-stale-images": {
        "task": "inference.sweep_stale_images",
        "schedule": INFERENCE_SWEEP_EVERY,
        "kwargs": {"older_than_s": INFERENCE_STALE_AFTER},
    },
    # Overlay files no prediction names (inference.services.heatmaps): a backstop.
    "inference-delete-orphan-heatmaps": {
        "task": "inference.delete_orphan_heatmaps",
        "schedule": 3600,
        "kwargs": {"older_than_s": 3600},
    },
    # Expired API tokens are deleted (and audited) even when nobody presents them again.
    "authentication-tokens-expire": {"task": "authentication.tokens_expire", "schedule": 3600},
}
# An analysis waiting longer than this (seconds) is overdue: the case page and the API say
# so, and /healthz answers 503 while the oldest waiting image is older.
ANALYSIS_OVERDUE_AFTER = envint("ANALYSIS_OVERDUE_AFTER", "300")
# /healthz fails the storage check when the media storage has less free space (MiB).
STORAGE_MIN_FREE_MB = envint("STORAGE_MIN_FREE_MB", "1024")
# A worker is considered alive when it wrote a heartbeat this recently (seconds).
WORKER_HEARTBEAT_INTERVAL = envint("WORKER_HEARTBEAT_INTERVAL", "5")
WORKER_STALE_AFTER = envint("WORKER_STALE_AFTER", "15")

# What a reviewer may diagnose, whatever the deployed model's classes are: a stable
# clinical vocabulary. A model whose labels differ maps them onto it in its manifest
# (extra.clinical_labels); "inconclusive" is always offered beside these.
CLINICAL_DIAGNOSES = envlist("CLINICAL_DIAGNOSES", "healthy,ALL,AML,CLL,CML")

# Grad-CAM overlays for reviewers, made by a heatmap worker after the predictions.
INFERENCE_HEATMAPS = envbool("INFERENCE_HEATMAPS", "True")
# Overlays one heatmap message makes (it queues the rest of its case again): short tasks,
# so a worker told to stop finishes its task within the grace period.
INFERENCE_HEATMAP_BATCH = envint("INFERENCE_HEATMAP_BATCH", "4")

REST_FRAMEWORK = {
    # Token first: an anonymous request then gets 401 with a "WWW-Authenticate: Token"
    # challenge (session authentication has no challenge to send, so DRF would say 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "authentication.api.ExpiringTokenAuthentication",
        "authentication.api.VerifiedSessionAuthentication",
    ],
    # 429 with Retry-After past these rates: the token endpoint per address, writes and
    # uploads per user (a view opts into "uploads" with throttle_scope).
    "DEFAULT_THROTTLE_CLASSES": [
        "authentication.throttles.WriteRateThrottle",
        "authentication.throttles.UploadRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "token": env("API_THROTTLE_TOKEN", "10/minute"),
        "writes": env("API_THROTTLE_WRITES", "120/minute"),
        "uploads": env("API_THROTTLE_UPLOADS", "30/minute"),
    },
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: DRF's browsable HTML pages need inline scripts, which the CSP forbids;
    # people read the API's own documentation page (/api/docs/).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # One JSON shape for every error: {"error": {"status", "code", "message", "fields"}}.
    "EXCEPTION_HANDLER": "leukweb.api.errors.api_exception_handler",
}
# API tokens (django-rest-knox): only a hash is stored; each expires API_TOKEN_HOURS after
# it was made and is revoked on logout, password, role or second-factor change.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=envint("API_TOKEN_HOURS", "8")),
    "AUTO_REFRESH": False,
    # Recognisable to secret scanners, and the prefix shown on the tokens page.
    "TOKEN_PREFIX": "lw_",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "LeukWeb API",
    "DESCRIPTION": "Patients, cases, smear images and CNN predictions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema holds no patient data and is what the public docs page renders.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # django-axes says at INFO that it started, in every command's output.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
