"""A plugin module that fails as it is imported."""

raise RuntimeError("the plugin's own start-up check failed")
