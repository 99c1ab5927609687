"""The ways sessions come in besides the mutations: the JSON Lines importer and the demo data
set. They write through the same writers (sessiongraph.models) and rules as the mutations."""
