"""``python -m tokenwindow.cli``: the same as the ``tokenwindow`` command."""

import sys

from tokenwindow.cli import main

sys.exit(main())
