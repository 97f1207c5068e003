-- Metric inventories as edges report them (encoded InventoryReport). A
-- report is named by (instance, session, seq), so a retry is stored once.
CREATE TABLE inventory_reports (
    instance_id   TEXT NOT NULL,
    session       TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    service       TEXT NOT NULL,
    received_at   BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    window_end    BIGINT NOT NULL,
    report        BLOB NOT NULL,
    PRIMARY KEY (instance_id, session, seq)
);
CREATE INDEX inventory_reports_service ON inventory_reports (service, window_end);

-- What people query: the source as uploaded and what was extracted (JSON).
CREATE TABLE usage_sources (
    name         TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    imported_at  BIGINT NOT NULL,
    imported_by  TEXT NOT NULL,
    parsed       TEXT NOT NULL
);

-- Issues; the full record is an encoded Issue, the columns are its keys.
CREATE TABLE issues (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    service     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    status      TEXT NOT NULL,
    policy_id   TEXT NOT NULL DEFAULT '',
    updated_at  BIGINT NOT NULL,
    body        BLOB NOT NULL,
    UNIQUE (kind, service, subject)
);
CREATE INDEX issues_policy ON issues (policy_id);
