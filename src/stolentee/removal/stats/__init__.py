"""Per-provider removal statistics kept in the database: the table's writer (:mod:`.store`), the
latency histogram (:mod:`.buckets`) and the report read from it (:mod:`.report`)."""
