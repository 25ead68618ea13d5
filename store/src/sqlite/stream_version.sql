-- The version of a stream's last event; NULL when the stream has none.
SELECT MAX(version) FROM events WHERE stream = ?1
