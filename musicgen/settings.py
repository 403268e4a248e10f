"""Settings for the musicgen site: one file, every knob read from the environment.

Development needs no environment at all (SQLite, ORM task broker, local media).
Production changes only through the variables listed in `.env.example`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str) -> str:
    """Return the variable `name`, or `default` when it is unset or empty."""
    return os.environ.get(name) or default


def envbool(name: str, default: str) -> bool:
    """Return the variable `name` as a boolean; anything but a clear yes/no is an error."""
    value = envstr(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be a boolean (true/false/1/0), got {value!r}")


def envint(name: str, default: str) -> int:
    """Return the variable `name` as an integer; a non-integer is an error."""
    value = envstr(name, default).strip()
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def envfloat(name: str, default: str) -> float:
    """Return the variable `name` as a finite number; anything else is an error."""
    value = envstr(name, default).strip()
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def envlist(name: str, default: str) -> list[str]:
    """Return the comma-separated variable `name` as a list of non-empty items."""
    return [item.strip() for item in envstr(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", "true")

_DEV_SECRET_KEY = "dev-only-insecure-secret-key"
SECRET_KEY = envstr("SECRET_KEY", _DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ValueError("SECRET_KEY must be set when DEBUG is off")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles so `runserver` serves static files the way production does.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "compositions",
]

MIDDLEWARE = [
    # /health/ and /health/workers/ for load balancers: before host checks and HTTPS redirects.
    "compositions.apis.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "musicgen.urls"
WSGI_APPLICATION = "musicgen.wsgi.application"

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
            ],
        },
    },
]

# No DATABASE_URL means a local SQLite file; CI and production pass a PostgreSQL URL.
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DB_CONN_MAX_AGE", "0"),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and each worker process write to one file. WAL lets readers go on while one
    # writer commits; BEGIN IMMEDIATE takes the write lock when a transaction starts, so two
    # writers queue on the busy timeout instead of deadlocking on a read lock that cannot be
    # upgraded (which SQLite answers at once with "database is locked", ignoring the timeout).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": envint("SQLITE_BUSY_TIMEOUT", "30"),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The login page and the API's token endpoint both go through the throttle.
AUTHENTICATION_BACKENDS = ["compositions.auth.ThrottledModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "compositions:list"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Where the pieces' files, uploads, scores, model files and data set archives live: empty (the
# default) means MEDIA_ROOT on this machine; "s3://bucket/optional/prefix" means S3-compatible
# object storage (django-storages and boto3), which is what lets web hosts and workers on other
# machines share them. Credentials come the usual way for boto3 (AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY, or the host's role); S3_ENDPOINT_URL names a server other than AWS.
STORAGE_URL = envstr("STORAGE_URL", "")
S3_ENDPOINT_URL = envstr("S3_ENDPOINT_URL", "")
S3_REGION = envstr("S3_REGION", "")
# 0: private files are streamed through the web process after its permission check. N > 0: the
# check answers with a redirect to a presigned URL of the object store that works for N seconds
# (the bucket stays private; the score viewer's fetch needs the bucket to allow the site's origin).
MEDIA_PRESIGNED_SECONDS = envint("MEDIA_PRESIGNED_SECONDS", "0")
if MEDIA_PRESIGNED_SECONDS < 0:
    raise ValueError("MEDIA_PRESIGNED_SECONDS must be 0 (stream) or a number of seconds")


def _default_storage(url: str) -> dict[str, object]:
    if not url:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    scheme, _, rest = url.partition("://")
    bucket, _, location = rest.partition("/")
    if scheme != "s3" or not bucket:
        raise ValueError(f"STORAGE_URL must be empty or s3://bucket[/prefix], got {url!r}")
    options: dict[str, object] = {
        "bucket_name": bucket,
        "location": location.strip("/"),
        "default_acl": None,  # the bucket's own policy: private
        "querystring_auth": True,  # every URL made is presigned...
        "querystring_expire": MEDIA_PRESIGNED_SECONDS or 60,  # ...and short-lived
        "file_overwrite": False,  # a name taken gets a new one, as on a local disk
        "signature_version": "s3v4",
    }
    if S3_ENDPOINT_URL:
        options["endpoint_url"] = S3_ENDPOINT_URL
        options["addressing_style"] = "path"  # servers other than AWS rarely have per-bucket host names
    if S3_REGION:
        options["region_name"] = S3_REGION
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}


STORAGES = {
    "default": _default_storage(STORAGE_URL),
    "staticfiles": {
        # The manifest needs `collectstatic`; plain storage keeps DEBUG and tests free of that step.
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}

# Generated MIDI and MP3 files. They are private: served only through views that check
# ownership, never under MEDIA_URL.
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = "media/"

# Empty means "let ml.audio.render.find_soundfont() pick the system General MIDI SoundFont".
SOUNDFONT_PATH = envstr("SOUNDFONT_PATH", "")
# Every MP3 is brought to an integrated loudness (LUFS) by its dynamics setting (medium, and
# crescendo and diminuendo over the whole piece, at MUSIC_LOUDNESS_LUFS), its true peak held under
# MUSIC_TRUE_PEAK_DBTP by a limiter; measured on the encoded file and stored with the piece.
MUSIC_LOUDNESS_LUFS = envfloat("MUSIC_LOUDNESS_LUFS", "-14")
MUSIC_LOUDNESS_SOFT_LUFS = envfloat("MUSIC_LOUDNESS_SOFT_LUFS", "-20")
MUSIC_LOUDNESS_LOUD_LUFS = envfloat("MUSIC_LOUDNESS_LOUD_LUFS", "-11")
MUSIC_TRUE_PEAK_DBTP = envfloat("MUSIC_TRUE_PEAK_DBTP", "-1")
# A score is engraved after each piece is done, in a child process stopped after this many seconds
# (0 turns scores off).
SCORE_TIMEOUT_SECONDS = envint("SCORE_TIMEOUT_SECONDS", "60")
MUSIC_MODEL_PATH = Path(envstr("MUSIC_MODEL_PATH", str(BASE_DIR / "ml" / "pretrained" / "default.keras")))
# Where a machine keeps its copies of model files read from object storage (one per stored file).
MODEL_CACHE_DIR = Path(envstr("MODEL_CACHE_DIR", str(Path(tempfile.gettempdir()) / "musicgen-models")))

# Background jobs: django-q2 over the database unless REDIS_URL names a Redis broker.
# Q_SYNC runs each task inside the caller (tests, debugging); it is read per call so the
# tests can switch it with the `settings` fixture.
REDIS_URL = envstr("REDIS_URL", "")
Q_SYNC = envbool("Q_SYNC", "false")
# The longest a generation task may run before django-q2 kills its worker (a 10-minute piece
# on a CPU takes a few minutes).
Q_TIMEOUT = envint("Q_TIMEOUT", "1200")
# Training runs as its own task with its own, longer limit.
TRAINING_TIMEOUT = envint("TRAINING_TIMEOUT", "14400")
# A running task touches its rows at least this often; rows silent for Q_STALL_SECONDS belong
# to a worker that died, and the reconciler gives them to another one.
Q_HEARTBEAT_SECONDS = envint("Q_HEARTBEAT_SECONDS", "10")
Q_STALL_SECONDS = envint("Q_STALL_SECONDS", "90")
# A pending row whose task has left the queue for this long without claiming it is queued again.
Q_ORPHAN_SECONDS = envint("Q_ORPHAN_SECONDS", "120")
# How many times a piece is started (or queued again) before it is failed for good.
Q_MAX_ATTEMPTS = envint("Q_MAX_ATTEMPTS", "3")
# SIGTERM or Ctrl-C to `manage.py worker`: a piece being written gets this long to finish; then its
# worker is stopped and the piece is queued again when a worker next starts.
Q_STOP_GRACE_SECONDS = envint("Q_STOP_GRACE_SECONDS", "30")
# Load and compile the model in every worker as it starts, so that no user waits for it.
Q_WARMUP = envbool("Q_WARMUP", "true")
if Q_HEARTBEAT_SECONDS * 3 > Q_STALL_SECONDS:
    raise ValueError("Q_STALL_SECONDS must be at least three heartbeats (Q_HEARTBEAT_SECONDS)")
Q_CLUSTER: dict[str, object] = {
    "name": "musicgen",
    "workers": envint("Q_WORKERS", "2"),
    "timeout": Q_TIMEOUT,
    # The ORM broker hands a task out again when it has not been acknowledged `retry` seconds
    # after delivery: that must come after the longest job of either kind has been killed.
    "retry": max(Q_TIMEOUT, TRAINING_TIMEOUT) + 300,
    # A task that raised (it could not claim its rows) is delivered again, up to this often.
    "max_attempts": Q_MAX_ATTEMPTS,
    "catch_up": False,
    "sync": Q_SYNC,
    "label": "Background tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Per-user limits, enforced in the database when a piece is requested.
QUOTA_ACTIVE_PIECES = envint("QUOTA_ACTIVE_PIECES", "8")  # queued or being written at once
QUOTA_PIECES_PER_DAY = envint("QUOTA_PIECES_PER_DAY", "200")  # in any 24 hours
# Versions one piece keeps (finished or being written): past it, a new version is refused (409)
# until the owner deletes one. Failed and cancelled versions do not count.
MAX_VERSIONS_PER_PIECE = envint("MAX_VERSIONS_PER_PIECE", "20")
if MAX_VERSIONS_PER_PIECE < 1:
    raise ValueError("MAX_VERSIONS_PER_PIECE must be at least 1")
# Password reset e-mails per hour, per address asking and per e-mail address asked for.
PASSWORD_RESETS_PER_HOUR = envint("PASSWORD_RESETS_PER_HOUR", "5")
# Plays counted per listener (signed-in user, or address) per hour, over all pieces.
PLAYS_PER_LISTENER_PER_HOUR = envint("PLAYS_PER_LISTENER_PER_HOUR", "120")
# Failed logins per user name and per address before a pause, and the pause in seconds.
LOGIN_ATTEMPTS = envint("LOGIN_ATTEMPTS", "5")
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", "300")
# An API token works for this many days after it is made (0: until it is revoked).
API_TOKEN_DAYS = envint("API_TOKEN_DAYS", "365")
if API_TOKEN_DAYS < 0:
    raise ValueError("API_TOKEN_DAYS must be 0 (never expire) or a number of days")
# Password reset e-mails. The console backend prints them (development); production sets
# django.core.mail.backends.smtp.EmailBackend and the EMAIL_HOST_* variables.
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "musicgen <noreply@localhost>")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", "587")
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "true")

# Uploaded MIDI files are refused before any work is queued when they are bigger than this, or
# claim more than these (checked from the file's own header and events, then parsed in a
# subprocess with the time and memory limits below).
PRIMER_MAX_BYTES = envint("PRIMER_MAX_BYTES", str(1024 * 1024))
# "Export everything" (an account's pieces as one zip): an export whose files come to more than
# EXPORT_MAX_BYTES fails with that reason instead of writing it; a finished zip is deleted after
# EXPORT_KEEP_HOURS.
EXPORT_MAX_BYTES = envint("EXPORT_MAX_BYTES", str(2 * 1024**3))
EXPORT_KEEP_HOURS = envint("EXPORT_KEEP_HOURS", "24")
if EXPORT_MAX_BYTES < 1 or EXPORT_KEEP_HOURS < 1:
    raise ValueError("EXPORT_MAX_BYTES and EXPORT_KEEP_HOURS must be at least 1")

CACHES = {
    # Shared by every process (login attempt counters): Redis when there is one, else the database.
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "musicgen_cache"}
}

# Sessions are read from the shared cache and written through to the database: with Redis, a
# signed-in request (a status poll every second or so while a piece is written) costs the
# database no session query, and nobody is signed out when Redis restarts.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "compositions.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "compositions.apis.exception_handlers.exception_handler",
    # Expensive endpoints have their own rates (per user, or per address when signed out), on top
    # of the per-user quotas; the counters live in the shared cache.
    "DEFAULT_THROTTLE_RATES": {
        "compose": envstr("THROTTLE_COMPOSE", "120/minute"),
        "upload": envstr("THROTTLE_UPLOAD", "60/hour"),
        "register": envstr("THROTTLE_REGISTER", "20/hour"),
        "sign_in": envstr("THROTTLE_SIGN_IN", "30/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "musicgen API",
    "DESCRIPTION": "Compose music with a neural network.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # One operation per API view, also where one URL routes its methods to several views.
    "DEFAULT_GENERATOR_CLASS": "compositions.apis.schema.SchemaGenerator",
    "PREPROCESSING_HOOKS": ["compositions.apis.schema.schema_v1_only"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "compositions.apis.schema.schema_enums"],
    # Swagger UI from the drf-spectacular-sidecar package: nothing is fetched from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Pages are never framed by other sites, browsers never guess content types (the audio and MIDI
# files come with theirs), and other origins see no more than the origin in the Referer.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", "true")
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Behind a TLS proxy: redirect plain HTTP, and tell browsers to stay on HTTPS.
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "true")
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", "31536000")
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "true")
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "true")

# Stored files are readable by the service's group, never by everyone, never world-writable.
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750
# Production can let the web server send media files: the view checks permission, then answers
# with "X-Accel-Redirect: <prefix><file name>" (nginx `internal` location over MEDIA_ROOT).
MEDIA_ACCEL_REDIRECT_PREFIX = envstr("MEDIA_ACCEL_REDIRECT_PREFIX", "")

# The worker's log is for operators: one line per job, not TensorFlow's C++ start-up chatter.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    # Per-job lines come from compositions.tasks; django-q2's own per-task lines repeat them.
    "loggers": {"django-q": {"level": envstr("Q_LOG_LEVEL", "WARNING")}},
}
