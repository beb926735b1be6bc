"""InstallSure integrations."""
