"""The gate every operation passes, whichever transport brought it (operation.py runs its
steps, for HTTP and the WebSocket alike): the API key (auth.py), size and decoding, persisted
and trusted documents (persisted.py), the limits on a document with its cost (limits.py) and
the request timeout (deadlines.py)."""
