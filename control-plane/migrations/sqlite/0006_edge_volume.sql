-- What each edge saw, whatever its policies (spec 1.7.1 VolumeStats), in
-- one-minute buckets: records and uncompressed OTLP protobuf bytes per
-- signal (0 bytes: not tracked, e.g. Prometheus scrapes). The minute is the
-- one the report was received in, as for policy_stats, so a policy's drops
-- and the volume they are a share of fall in the same buckets. Pruned with
-- policy_stats.
CREATE TABLE edge_volume (
    instance_id         TEXT NOT NULL,
    minute              BIGINT NOT NULL,
    log_records         BIGINT NOT NULL,
    log_bytes           BIGINT NOT NULL,
    metric_data_points  BIGINT NOT NULL,
    metric_bytes        BIGINT NOT NULL,
    spans               BIGINT NOT NULL,
    span_bytes          BIGINT NOT NULL,
    PRIMARY KEY (instance_id, minute)
);
CREATE INDEX edge_volume_minute ON edge_volume (minute);
