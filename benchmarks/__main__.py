"""``python -m benchmarks``: the one benchmark command (see :mod:`benchmarks.bench`)."""

import sys

from benchmarks.bench import main

sys.exit(main())
