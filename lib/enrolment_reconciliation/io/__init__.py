"""I/O, one module per outside system or durable thing: the only code that reads or writes.

``cassandra`` (sessions, connector reads by direct join and by scan, the two writers),
``kafka`` (the request stream, the event topics), ``relation_cache`` (Redis), ``search`` (the
Sunbird search service), ``outbox`` (events kept until published), ``lease`` (one backfill at a
time), ``backfill_runs`` (a backfill's runs and finished slices), ``staging`` (what a backfill
run reads once), ``filesystem`` (Hadoop's FileSystem by path), ``throttle`` (writes per second),
``probes`` (does a store answer now), ``prometheus`` (the driver's metrics endpoint).

May import: ``core`` (schemas, counters, structure), ``runtime`` (settings, the JVM door, the
fault types) and ``io``. Each function takes the settings section of its system
(``runtime.config.CassandraSettings``, ...), never the whole job's configuration.
"""
