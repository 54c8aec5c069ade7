"""Examples (importable from the repository root: ``examples.plugins.template:MyLoss``)."""
