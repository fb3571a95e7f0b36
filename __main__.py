"""`python -m cxloop`: the same command line as the `cxloop` script."""

from cxloop.cli import main

if __name__ == "__main__":
    main()
