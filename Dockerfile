# One image for every process type in the Procfile (workers, Flower, the gateway).
#
#   DOCKER_BUILDKIT=1 docker build -t tokenwindow .
#   DOCKER_BUILDKIT=1 docker build --build-arg BASE_IMAGE=my-debian-python \
#       --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt -t tokenwindow .
#
# BASE_IMAGE needs python3 (3.11+) with venv and pip. A registry behind a private CA gets that
# CA through the `pip_cert` build secret: it is mounted for the install steps only and never
# lands in a layer. The tokenizer vocabularies ship inside the litellm package, so a container
# never downloads anything at start.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    TIKTOKEN_CACHE_DIR=/opt/venv/lib/python3.11/site-packages/litellm/litellm_core_utils/tokenizers

WORKDIR /app

# Dependencies first, from the two pyproject files alone (the client, then the service with its
# gateway extra): editing the code does not invalidate this layer.
COPY pyproject.toml ./
COPY service/pyproject.toml ./service/
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && python3 -m venv /opt/venv \
    && python -c "import tomllib; c = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
s = tomllib.load(open('service/pyproject.toml', 'rb'))['project']; \
deps = [d for d in s['dependencies'] if not d.startswith('tokenwindow')]; \
print('\n'.join(['setuptools>=77', *c['dependencies'], *deps, *s['optional-dependencies']['gateway']]))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md LICENSE Procfile celeryconfig.py ./
COPY tokenwindow ./tokenwindow
COPY strategies ./strategies
COPY workers ./workers
COPY tasks ./tasks
COPY gateway ./gateway
RUN pip install --no-deps --no-build-isolation . ./service \
    && useradd --create-home --uid 10001 tokenwindow

USER tokenwindow

# Fails the build if the vocabularies are not on disk where TIKTOKEN_CACHE_DIR points.
RUN python -c "from tokenwindow.counting import counter_for_encoding; counter_for_encoding('o200k_base'); counter_for_encoding('cl100k_base')"

# Every process needs the Redis that holds session state; compose adds per-service checks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "from workers.connections import get_redis; get_redis().ping()"]

EXPOSE 5555 8080
CMD ["celery", "-A", "workers.app", "worker", "-Q", "fast", "-n", "fast@%h", "-l", "INFO"]
