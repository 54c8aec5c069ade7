"""Example loss plugins: name one in ``LOSS_SERVICE_PLUGINS`` (see the README's "Plugins")."""
