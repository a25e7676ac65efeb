"""Entry point of the @lazygen//bazel:lazygen tool: the lazygen command line."""

from __future__ import annotations

import sys

from lazygen.cli import main

if __name__ == "__main__":
    sys.exit(main())
