"""One module per schema revision; numbered ``NNNN_what.py``, applied in order."""
