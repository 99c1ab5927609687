"""What each field does: queries, mutations, DataLoaders and the checks of who may see what.

Resolvers return database rows and pages of rows; `schema/` turns them into GraphQL types.
"""
