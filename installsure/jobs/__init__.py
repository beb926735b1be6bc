"""InstallSure jobs."""
