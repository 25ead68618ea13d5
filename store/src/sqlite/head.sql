-- The last committed position; 0 for an empty log.
SELECT COALESCE(MAX(position), 0) FROM events
