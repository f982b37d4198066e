-- Migration 0004_live_ops: cameras get a vertical field of view (NULL: from hfov at 16:9).
ALTER TABLE cameras ADD COLUMN vfov double precision CHECK (vfov > 0 AND vfov <= 180);
