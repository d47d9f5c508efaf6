"""``python -m tests.fakes --port 0``: serve a fake provider until SIGTERM or Ctrl-C."""

from tests.fakes.async_server import main

main()
