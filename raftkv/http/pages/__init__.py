"""The pages a node serves to a browser: the dashboard (``/ui``) and the
learning page (``/ui/learn``, and its live source); their static files are
in :mod:`raftkv.ui`."""
