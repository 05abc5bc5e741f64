"""``python -m aru.cli``: the same as the ``aru`` command."""

from aru.cli import main

main()
