"""The fault suite (`make faults`, `python -m sessiongraph.faults`): the server and the
importer killed at random moments, a private PostgreSQL restarted and frozen under load,
SQLite written by several processes; what was acknowledged against what is stored. Also the
tools the tests use to make a database fail: `link.Link`, a TCP relay that can freeze or cut
the way to PostgreSQL."""
