"""Downloads: a session as a file (CSV, JSON, JSON Lines, text, asciicast), through a signed
link any server process of the deployment accepts (`signing.py`), streamed from the
database in batches (`rows.py`) by the format's writer (`formats.py`); the same bytes from
the command line (`export.py`). No GraphQL and no HTTP here: schema/export.py makes the
links, transport/downloads.py serves them."""
