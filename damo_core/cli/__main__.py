"""``python -m damo_core.cli``: the ``damo`` command, for launchers that take a module
(``torchrun -m damo_core.cli train ...``)."""

from damo_core.cli.app import main

main()
