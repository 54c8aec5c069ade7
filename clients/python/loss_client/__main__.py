"""``python -m loss_client``: the ``loss-client`` CLI."""

from loss_client.cli import main

raise SystemExit(main())
