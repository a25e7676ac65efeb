import sys

try:
    from lazygen.cli import main
except KeyboardInterrupt:  # Ctrl-C before lazygen.cli.main handles it
    sys.exit(130)

sys.exit(main())
