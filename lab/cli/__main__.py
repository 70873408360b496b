"""`python -m lab.cli ...` runs the `costlab` command."""

import sys

from lab.cli import main

sys.exit(main())
