SELECT position, envelope, leaf_hash FROM events WHERE stream = ?1 AND version >= ?2 ORDER BY version
