"""Connection failures become one line that hides passwords and names the setting."""

from __future__ import annotations

import kombu.exceptions
import redis.exceptions

from tokenwindow.settings import load_settings
from tokenwindow.unreachable import hide_password, unreachable


def test_passwords_are_hidden_and_the_rest_kept() -> None:
    assert hide_password("redis://:pw@host:6380/2") == "redis://:***@host:6380/2"
    assert hide_password("amqp://user:pw@rabbit//") == "amqp://user:***@rabbit//"
    assert hide_password("rediss://default:p%40ss@h/0?ssl=1") == "rediss://default:***@h/0?ssl=1"
    assert hide_password("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_the_error_names_the_url_and_setting_of_the_failing_side() -> None:
    settings = load_settings(
        _env_file=None, redis_url="redis://:a@r:1/0", broker_url="amqp://u:b@q:2//"
    )
    store = unreachable(redis.exceptions.ConnectionError("refused"), settings).message
    assert store.startswith("Redis does not answer at redis://:***@r:1/0")
    assert "REDIS_URL" in store
    broker = unreachable(kombu.exceptions.OperationalError("refused"), settings).message
    assert broker.startswith("the broker does not answer at amqp://u:***@q:2//")
    assert "set BROKER_URL to" in broker
