"""sessiongraph: a GraphQL API over the history of AI agent and tool sessions.

This package holds the service around the schema: the ASGI app, HTTP handling, API key
authentication, the importer and the `sessiongraph` console script.
"""
