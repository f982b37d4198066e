-- Migration 0008_road_snap, down: road_graph_rebuild() as 0005_dispatch made it (no end snapping).
DROP FUNCTION IF EXISTS road_graph_rebuild(double precision, double precision, double precision, double precision);

-- Rebuild road_vertices/road_edges from roads (the roads loader calls it in its transaction, so
-- readers keep the previous graph until the load commits). Returns the number of edges.
CREATE FUNCTION road_graph_rebuild(p_snap_m double precision DEFAULT 0.01) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM road_edges;
    DELETE FROM road_vertices;
    CREATE TEMP TABLE road_graph_pieces ON COMMIT DROP AS
    WITH parts AS (
        SELECT r.id AS road_id, r.class, r.bridge, d.geom
          FROM roads r CROSS JOIN LATERAL ST_Dump(r.geom_4548) d
         WHERE NOT ST_IsEmpty(d.geom) AND ST_Length(d.geom) > 0
    ),
    bridge_ends AS (
        SELECT ST_Collect(p.pt) AS pts FROM (
            SELECT ST_StartPoint(geom) AS pt FROM parts WHERE bridge
            UNION ALL SELECT ST_EndPoint(geom) FROM parts WHERE bridge) p
    ),
    -- at-grade roads noded against each other, then split at bridge ends lying on them
    ground AS (
        SELECT (ST_Dump(ST_Node(ST_Collect(geom)))).geom AS geom FROM parts WHERE NOT bridge
    ),
    ground_split AS (
        SELECT CASE WHEN b.pts IS NOT NULL AND ST_DWithin(g.geom, b.pts, p_snap_m)
                    THEN ST_Split(ST_Snap(g.geom, b.pts, p_snap_m), b.pts)
                    ELSE g.geom END AS geom
          FROM ground g CROSS JOIN bridge_ends b
    ),
    pieces AS (
        SELECT (ST_Dump(geom)).geom AS geom FROM ground_split
        UNION ALL SELECT geom FROM parts WHERE bridge
    )
    SELECT row_number() OVER (ORDER BY src.road_id, ST_XMin(p.geom), ST_YMin(p.geom)) AS id,
           src.road_id, src.class, p.geom
      FROM pieces p
      -- the road a piece came from: the at-grade road (or bridge) nearest its midpoint
      CROSS JOIN LATERAL (
          SELECT a.road_id, a.class FROM parts a
           WHERE ST_DWithin(a.geom, ST_LineInterpolatePoint(p.geom, 0.5), 0.05)
           ORDER BY a.geom <-> ST_LineInterpolatePoint(p.geom, 0.5), a.road_id LIMIT 1) src
     WHERE ST_GeometryType(p.geom) = 'ST_LineString' AND ST_Length(p.geom) > 0;

    INSERT INTO road_vertices (id, geom_4548)
    SELECT row_number() OVER (ORDER BY ST_X(pt), ST_Y(pt)), pt
      FROM (SELECT DISTINCT ST_SnapToGrid(e.pt, p_snap_m) AS pt FROM (
                SELECT ST_StartPoint(geom) AS pt FROM road_graph_pieces
                UNION ALL SELECT ST_EndPoint(geom) FROM road_graph_pieces) e) v;

    INSERT INTO road_edges (id, road_id, class, source, target, length_m, walk_s, drive_s, geom_4548)
    SELECT p.id, p.road_id, p.class, s.id, t.id, ST_Length(p.geom),
           ST_Length(p.geom) / (sp.walk_kmh / 3.6), ST_Length(p.geom) / (sp.drive_kmh / 3.6), p.geom
      FROM road_graph_pieces p
      JOIN road_vertices s ON s.geom_4548 = ST_SnapToGrid(ST_StartPoint(p.geom), p_snap_m)
      JOIN road_vertices t ON t.geom_4548 = ST_SnapToGrid(ST_EndPoint(p.geom), p_snap_m)
      CROSS JOIN LATERAL (
          SELECT walk_kmh, drive_kmh FROM road_speed
           WHERE class = COALESCE(p.class, '*') OR class = '*'
           ORDER BY class = '*' LIMIT 1) sp;
    GET DIAGNOSTICS n = ROW_COUNT;
    DROP TABLE road_graph_pieces;
    RETURN n;
END $$;

REVOKE EXECUTE ON FUNCTION road_graph_rebuild(double precision) FROM PUBLIC;
