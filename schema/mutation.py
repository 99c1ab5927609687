"""The Mutation root: the mutations of each domain, merged into one type."""

from strawberry.tools import merge_types

from sessiongraph.schema.recording_mutations import RecordingMutations
from sessiongraph.schema.session_mutations import SessionMutations

MUTATION_TYPES: tuple[type, ...] = (SessionMutations, RecordingMutations)

Mutation = merge_types("Mutation", MUTATION_TYPES) if MUTATION_TYPES else None
