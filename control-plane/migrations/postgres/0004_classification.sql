-- Event types: metric families and log templates, one row per stable
-- fingerprint. `definition` is a hash of what a classifier is shown
-- (name, type, HELP, label keys, severity): a change reclassifies.
-- `body` is the encoded EventType without its classification or activity.
-- `merged_into` names the event type this one turned out to be (a merged
-- template, or one a restarted miner started from another line).
CREATE TABLE event_types (
    fingerprint   TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    service       TEXT NOT NULL,
    definition    TEXT NOT NULL,
    merged_into   TEXT NOT NULL DEFAULT '',
    -- Logs: lines and bytes seen in all (added up atomically). Metrics:
    -- series and bytes per scrape in the latest inventory.
    count         BIGINT NOT NULL DEFAULT 0,
    bytes         BIGINT NOT NULL DEFAULT 0,
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    body          BYTEA NOT NULL
);
CREATE INDEX event_types_service ON event_types (service, kind);

-- One classification per (event type, classifier version): the cache that
-- makes cost scale with diversity, not volume. `definition` is the event
-- type's definition when it was classified.
CREATE TABLE classifications (
    fingerprint   TEXT NOT NULL,
    classifier    TEXT NOT NULL,
    definition    TEXT NOT NULL,
    category      TEXT NOT NULL,
    verdict       TEXT NOT NULL,
    classified_at BIGINT NOT NULL,
    body          BYTEA NOT NULL,
    PRIMARY KEY (fingerprint, classifier)
);

-- Classification runs (encoded ClassificationRun).
CREATE TABLE classification_runs (
    id           BIGSERIAL PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    body         BYTEA NOT NULL
);

-- Tokens billed per classifier over all runs.
CREATE TABLE classification_usage (
    classifier     TEXT PRIMARY KEY,
    input_tokens   BIGINT NOT NULL,
    output_tokens  BIGINT NOT NULL,
    requests       BIGINT NOT NULL
);

-- Named leases so that one replica at a time does a job (a classification
-- run) that must not be done twice.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- Edge reports whose log templates were counted, so a retried report
-- (same instance, session and seq) is counted once.
CREATE TABLE log_reports (
    instance_id  TEXT NOT NULL,
    session      TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (instance_id, session, seq)
);
