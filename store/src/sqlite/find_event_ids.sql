-- Which of a batch's event ids are already recorded, and where. The writer appends the
-- parenthesised list of placeholders, one per id.
SELECT event_id, position, stream, version, event_type FROM events WHERE event_id IN
