"""InstallSure auth."""
