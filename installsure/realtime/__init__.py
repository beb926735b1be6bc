"""InstallSure realtime."""
