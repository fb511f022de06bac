import sys

from tradetape.cli.main import main

try:
    sys.exit(main())
except KeyboardInterrupt:  # Ctrl-C before the command's own signal handling is installed
    sys.exit(130)
