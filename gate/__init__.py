"""The gate every operation passes, whichever transport brought it: the API key, persisted and
trusted documents, and the limits on a document (size, depth, nodes, fields) with its cost."""
