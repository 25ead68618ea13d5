-- The ledger's signed checkpoints, projected from the `ledger` stream (CheckpointSigned), and the
-- Merkle roots of full 256-leaf tiles of the log, from which proofs are assembled without reading
-- the whole log. A tile's root never changes once its 256th event is committed; both tables are
-- derived and can be rebuilt from the log.
CREATE TABLE checkpoints (
    -- The position of the CheckpointSigned event.
    position  INTEGER PRIMARY KEY,
    tree_size INTEGER NOT NULL,
    root_hash BLOB    NOT NULL CHECK (length(root_hash) = 32),
    signed_at INTEGER NOT NULL,
    origin    TEXT    NOT NULL,
    note      TEXT    NOT NULL
);
CREATE INDEX checkpoints_by_tree_size ON checkpoints (tree_size);

CREATE TABLE ledger_tiles (
    -- Tile n covers leaf indices [256 n, 256 n + 256), i.e. positions 256 n + 1 ..= 256 n + 256.
    tile INTEGER PRIMARY KEY CHECK (tile >= 0),
    root BLOB    NOT NULL CHECK (length(root) = 32)
);
