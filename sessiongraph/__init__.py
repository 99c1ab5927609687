"""sessiongraph: a GraphQL API over the history of AI agent and tool sessions.

The import root. Each top-level folder of the repository is a subpackage named for one step
of the flow: transport (HTTP, WebSocket) -> gate (API key, documents, limits) -> schema ->
resolvers -> loaders -> models -> database; beside them live (the pub/sub broker), ingest
(the importer, the demo), planner (planned execution of queries), cli (the console script)
and migrations. This folder holds only the settings every step reads (config.py).
"""
