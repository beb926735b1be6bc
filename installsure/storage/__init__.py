"""InstallSure storage."""
