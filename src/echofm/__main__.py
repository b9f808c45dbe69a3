"""`python -m echofm` runs the CLI."""
import sys

from echofm.cli import main

if __name__ == "__main__":
    sys.exit(main())
