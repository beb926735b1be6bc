"""InstallSure processors."""
