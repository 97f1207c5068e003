-- An instance id is bound to the API key that registered it; a claim by
-- another key is refused and the latest one recorded here (issue 16).
ALTER TABLE edges ADD COLUMN conflict_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE edges ADD COLUMN conflict_at BIGINT NOT NULL DEFAULT 0;
