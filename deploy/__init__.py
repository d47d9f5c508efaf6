"""Deployment tooling: ``deploy.ecs`` (``./deploy.sh``) brings the compose services to AWS ECS."""
