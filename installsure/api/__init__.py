"""InstallSure api."""
