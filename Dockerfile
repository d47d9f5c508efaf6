# One image for every process type in the Procfile (workers, Flower, the gateway).
# The tokenizer vocabularies ship inside the litellm package; the build loads them once from
# there, so a container never downloads anything at start.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    TIKTOKEN_CACHE_DIR=/usr/local/lib/python3.11/site-packages/litellm/litellm_core_utils/tokenizers

WORKDIR /app

COPY pyproject.toml README.md Procfile celeryconfig.py ./
COPY tokenwindow ./tokenwindow
COPY strategies ./strategies
COPY workers ./workers
COPY tasks ./tasks
COPY gateway ./gateway
RUN pip install ".[gateway]"

RUN useradd --create-home --uid 10001 tokenwindow
USER tokenwindow

# Fails the build if the vocabularies are not on disk where TIKTOKEN_CACHE_DIR points.
RUN python -c "from tokenwindow.counting import counter_for_encoding; counter_for_encoding('o200k_base'); counter_for_encoding('cl100k_base')"

EXPOSE 5555 8080
CMD ["celery", "-A", "workers.app", "worker", "-Q", "fast", "-n", "fast@%h", "-l", "INFO"]
