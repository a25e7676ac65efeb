import sys

from lazygen.cli import main

sys.exit(main())
