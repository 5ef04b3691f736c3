"""`python -m aoi` runs the same command as the `aoi` console script."""

from aoi.cli import main

if __name__ == "__main__":
    main()
