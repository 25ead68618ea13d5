SELECT position, envelope, leaf_hash FROM events WHERE position >= ?1 ORDER BY position LIMIT ?2
