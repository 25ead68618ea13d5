-- The position of a stream's last event; no row when the stream has none.
SELECT position FROM events WHERE stream = ?1 ORDER BY version DESC LIMIT 1
