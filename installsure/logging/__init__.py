"""Internals of ``installsure.logs``; import from there, not from here."""
