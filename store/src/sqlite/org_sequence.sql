-- The sequence number of an organization's last event; NULL when it has none.
SELECT MAX(org_sequence) FROM events WHERE org_id = ?1
