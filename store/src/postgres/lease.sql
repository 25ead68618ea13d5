-- Takes or renews the leader's lease for $1 until $2 seconds from now (the database's
-- clock): granted when nobody holds it, when $1 holds it, or when its holder let it expire.
-- Returns the lease's term, or no row when another process holds it.
INSERT INTO leader_lease (id, holder, term, expires_at)
VALUES (1, $1, 1, now() + $2::float8 * interval '1 second')
ON CONFLICT (id) DO UPDATE
    SET holder = excluded.holder,
        expires_at = excluded.expires_at,
        term = leader_lease.term + CASE WHEN leader_lease.holder = excluded.holder THEN 0 ELSE 1 END
    WHERE leader_lease.holder = excluded.holder OR leader_lease.expires_at < now()
RETURNING term
