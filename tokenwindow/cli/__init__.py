"""The ``tokenwindow`` command line.

Each subcommand lives in its own module in this package and exposes
``register(subparsers) -> None``; the module's parser sets ``handler`` to a function taking the
parsed arguments and returning the exit code (0 ok, 1 partial failure, 2 bad usage or input,
3 Redis, the broker or a provider did not answer).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from tokenwindow import __version__
from tokenwindow.errors import TokenWindowError, UnreachableError

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

NEEDS_REDIS = "Needs Redis at REDIS_URL (no broker or workers)."
EPILOG = """\
What each command needs: count and models run offline; sessions and metrics read Redis
(REDIS_URL); demo and compress (without --local) also need the broker (BROKER_URL, default
REDIS_URL) and running workers (`make run`, or the Procfile's worker_* processes).

Exit status: 0 ok, 1 partly failed, 2 bad usage or input, 3 Redis, the broker or a provider
did not answer (one line names the URL and the setting to change).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenwindow",
        description="Keep LLM conversations inside their context window.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tokenwindow {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from tokenwindow.settings import get_settings
    from tokenwindow.unreachable import CONNECTION_ERRORS, unreachable

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            code: int = args.handler(args)
        except CONNECTION_ERRORS as exc:
            raise unreachable(exc, get_settings()) from None
    except UnreachableError as exc:
        print(f"tokenwindow: error: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except TokenWindowError as exc:
        print(f"tokenwindow: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. ``head``) went away: stop quietly, as Unix tools do.
        sys.stderr.close()
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
