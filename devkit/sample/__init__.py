"""Sample data for demos, tests and benchmarks: course hierarchies, their relation-cache keys
(the relation-cache-updater rules), generated learners, and a loader for the real stores."""
