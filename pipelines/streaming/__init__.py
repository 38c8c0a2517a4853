"""Everything that reads or writes Kafka: topics, producer, dead letters, offsets, digesters,
the alert reader and OTLP decoding. One home, so a reader finds the streaming path in one folder."""
