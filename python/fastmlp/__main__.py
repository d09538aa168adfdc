"""`python -m fastmlp …`; the `fastmlp` console script calls main() too."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
