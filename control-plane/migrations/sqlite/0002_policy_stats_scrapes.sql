-- Scrapes (or batches) each policy was evaluated in, per minute: per-scrape
-- figures (bytes dropped / scrapes) do not depend on the scrape interval.
-- Buckets stored before this column count no scrapes.
ALTER TABLE policy_stats ADD COLUMN scrapes BIGINT NOT NULL DEFAULT 0;
