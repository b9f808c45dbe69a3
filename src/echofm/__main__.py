"""`python -m echofm` runs the CLI."""
import sys

from echofm.cli import main

sys.exit(main())
