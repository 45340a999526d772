"""``python -m octzoo``: the same dispatcher as the ``octzoo`` command."""

from octzoo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
