"""InstallSure db."""
