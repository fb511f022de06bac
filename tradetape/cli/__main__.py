import sys

from tradetape.cli.main import main

sys.exit(main())
