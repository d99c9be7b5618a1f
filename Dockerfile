# kmconsole image: one image for web (gunicorn), worker, beat and the one-shot migrate step.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KMCONSOLE_VAR_DIR=/app/var

WORKDIR /app

# Dependencies first (pinned in pyproject.toml), so code changes do not reinstall them.
# pyproject installs no package of its own: only the pinned dependencies.
COPY pyproject.toml README.md ./
RUN pip install .

COPY . .

# Static files are collected at build time and served by whitenoise (hashed names).
# The key below exists only for this build step; the containers get theirs from the env.
RUN SECRET_KEY=collectstatic-only-not-a-secret DEBUG=0 python manage.py collectstatic --noinput -v0

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin kmconsole \
    && mkdir -p /app/var \
    && chown -R kmconsole:kmconsole /app/var
USER kmconsole

EXPOSE 8000
# Bind, workers and the timeout (with the web requests' Apple budget): gunicorn.conf.py.
CMD ["gunicorn", "kmconsole.wsgi:application", "--config", "gunicorn.conf.py"]
