"""InstallSure redis."""
