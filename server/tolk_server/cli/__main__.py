"""`python -m tolk_server.cli …`, the same as `tolk …`."""

from tolk_server.cli.commands import main

main()
