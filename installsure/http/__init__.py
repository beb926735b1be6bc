"""InstallSure http."""
