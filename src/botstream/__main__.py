"""Allows ``python -m botstream``."""

from botstream.cli import main

raise SystemExit(main())
