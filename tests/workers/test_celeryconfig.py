"""The Celery configuration keeps the promises the design makes about long, retryable tasks."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

import celeryconfig
from tokenwindow.constants import QUEUE_COMPLETIONS, QUEUE_SUMMARIZATION, QUEUES, TASK_ROUTES


@pytest.fixture(scope="module")
def app() -> Celery:
    """The real app with its task modules imported, as a worker sees it."""
    from workers.app import app

    app.loader.import_default_modules()
    return app


def our_tasks(app: Celery) -> set[str]:
    return {name for name in app.tasks if name.startswith("tokenwindow.")}


def test_only_json_is_accepted(app: Celery) -> None:
    conf = app.conf
    assert conf.accept_content == ["json"]
    assert conf.result_accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"


def test_every_task_has_an_explicit_route(app: Celery) -> None:
    routes: dict[str, Any] = app.conf.task_routes
    unrouted = our_tasks(app) - set(routes)
    assert not unrouted, f"tasks without a route in tokenwindow.constants.TASK_ROUTES: {unrouted}"


def test_every_route_has_a_registered_task(app: Celery) -> None:
    routes: dict[str, Any] = app.conf.task_routes
    stale = set(routes) - our_tasks(app)
    assert not stale, f"routes for tasks that no module registers: {stale}"


def test_routes_name_declared_queues(app: Celery) -> None:
    declared = {queue.name for queue in app.conf.task_queues}
    assert declared == set(QUEUES)
    for name, route in app.conf.task_routes.items():
        assert route["queue"] in declared, name
    assert app.conf.task_create_missing_queues is False


def test_tasks_are_acknowledged_late_and_redelivered_on_worker_loss(app: Celery) -> None:
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    for name in our_tasks(app):
        task = app.tasks[name]
        # A task may not quietly opt out of the global policy.
        assert task.acks_late is True, name
        assert task.reject_on_worker_lost in (None, True), name
        assert task.acks_on_failure_or_timeout in (None, True), name


def time_limits(app: Celery, name: str) -> tuple[float, float]:
    """A task's own limits (annotations are applied to the task) or else the global ones."""
    task = app.tasks[name]
    soft = task.soft_time_limit or app.conf.task_soft_time_limit
    hard = task.time_limit or app.conf.task_time_limit
    return float(soft), float(hard)


def test_every_task_has_a_soft_limit_below_its_hard_limit(app: Celery) -> None:
    for name in our_tasks(app):
        soft, hard = time_limits(app, name)
        assert 0 < soft < hard, (name, soft, hard)


def test_visibility_timeout_outlasts_the_longest_task(app: Celery) -> None:
    longest = max(time_limits(app, name)[1] for name in our_tasks(app))
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert visibility > longest


def test_provider_queues_are_the_routed_ones() -> None:
    """Completions and summaries, the long provider calls, have queues of their own."""
    assert {QUEUE_COMPLETIONS, QUEUE_SUMMARIZATION} <= set(TASK_ROUTES.values())
    assert celeryconfig.task_default_queue in QUEUES
