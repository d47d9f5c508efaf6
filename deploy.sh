#!/usr/bin/env sh
# Deploy the compose services to AWS ECS: ./deploy.sh [DEPLOY_FILE] [--dry-run]
# DEPLOY_FILE defaults to deploy/ecs.yaml. Needs the deploy extra: pip install -e ".[deploy]".
# AWS credentials and region come from the usual places (environment, profile, instance role);
# AWS_ENDPOINT_URL points every call at an emulator instead.
set -eu
cd "$(dirname "$0")"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m deploy.ecs "$@"
