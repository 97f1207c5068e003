-- Policies as edges receive them, with their scope and current revision.
CREATE TABLE policies (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    target      TEXT NOT NULL,
    spec        BLOB NOT NULL,
    scope       BLOB NOT NULL,
    created_by  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Every change to a policy, kept after the policy is deleted.
CREATE TABLE policy_revisions (
    policy_id   TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    action      TEXT NOT NULL,
    author      TEXT NOT NULL,
    at          BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    spec        BLOB,
    scope       BLOB,
    PRIMARY KEY (policy_id, revision)
);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target, seq);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    last_used   BIGINT NOT NULL DEFAULT 0,
    revoked_at  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE edges (
    instance_id       TEXT PRIMARY KEY,
    service_name      TEXT NOT NULL,
    service_namespace TEXT NOT NULL,
    service_version   TEXT NOT NULL,
    metadata          BLOB NOT NULL,
    transport         TEXT NOT NULL,
    replica           TEXT NOT NULL,
    api_key_id        TEXT NOT NULL,
    first_seen        BIGINT NOT NULL,
    last_seen         BIGINT NOT NULL,
    connected         BOOLEAN NOT NULL,
    desired_hash      TEXT NOT NULL,
    applied_hash      TEXT NOT NULL,
    last_failed_hash  TEXT NOT NULL,
    policy_errors     TEXT NOT NULL
);

-- Per-policy activity in one-minute buckets.
CREATE TABLE policy_stats (
    policy_id       TEXT NOT NULL,
    minute          BIGINT NOT NULL,
    hits            BIGINT NOT NULL,
    misses          BIGINT NOT NULL,
    bytes_dropped   BIGINT NOT NULL,
    series_dropped  BIGINT NOT NULL,
    PRIMARY KEY (policy_id, minute)
);
CREATE INDEX policy_stats_minute ON policy_stats (minute);

-- The last statistics report stored per edge process, so a retry is counted once.
CREATE TABLE stats_sessions (
    instance_id TEXT NOT NULL,
    session     TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (instance_id, session)
);
