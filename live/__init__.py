"""Live delivery: the pub/sub broker that carries what writers announce to the subscribers of
every server process."""
