class Fallback(Exception):
    """The planner cannot give this answer; normal execution will."""
