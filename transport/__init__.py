"""The transports: GraphQL over HTTP and over WebSocket on /graphql, the ASGI app that routes
them, and the one-write HTTP protocol `serve` hands uvicorn. Every operation they carry passes
the gate (sessiongraph.gate) before the schema sees it."""
