import sys

from lsh_tune.cli import main

sys.exit(main())
