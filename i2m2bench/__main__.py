import sys

from i2m2bench.cli import main

sys.exit(main())
