-- Migration 0008_road_snap: road_graph_rebuild() snaps road ends before noding.
--
-- Digitised roads rarely meet exactly: an end stops a few cm to a metre short of the road it
-- meets (or runs just past it), consecutive pieces of one street leave a gap, coordinates are
-- rounded by the CRS round trip. ST_Node finds no crossing there, so the graph fell apart
-- (the sample: 132 components). Now, before noding:
--   1. road ends (start/end of every part, bridges included) closer than p_end_snap_m to each
--      other are one junction (ST_ClusterDBSCAN; the junction is their centroid);
--   2. a junction within p_end_snap_m of an at-grade road other than its own roads moves onto
--      the nearest one (ST_ClosestPoint); bridges take no junction between their ends;
--   3. each part's ends move to their junction; at-grade roads get a vertex at every junction
--      within p_end_snap_m (ST_Snap) and are split there, as well as at every crossing (ST_Node).
-- p_end_snap_m = 0 turns the snapping off (ends still merge within p_snap_m). A part shorter
-- than the tolerance whose two ends become one junction disappears (its neighbours meet).
-- p_walk_kmh / p_drive_kmh (when given) first set the class-default speeds (road_speed '*').
DROP FUNCTION IF EXISTS road_graph_rebuild(double precision);

CREATE FUNCTION road_graph_rebuild(
    p_end_snap_m double precision DEFAULT 2.0,
    p_walk_kmh double precision DEFAULT NULL,
    p_drive_kmh double precision DEFAULT NULL,
    p_snap_m double precision DEFAULT 0.01
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    tol double precision;
BEGIN
    IF p_end_snap_m IS NULL OR p_end_snap_m < 0 OR p_end_snap_m > 50 THEN
        RAISE EXCEPTION 'road end snapping tolerance % m: give 0 to 50 m', p_end_snap_m;
    END IF;
    IF p_snap_m IS NULL OR p_snap_m <= 0 OR p_snap_m > 1 THEN
        RAISE EXCEPTION 'vertex snapping % m: give more than 0, at most 1 m', p_snap_m;
    END IF;
    IF p_walk_kmh IS NOT NULL OR p_drive_kmh IS NOT NULL THEN
        IF COALESCE(p_walk_kmh, 1) <= 0 OR COALESCE(p_drive_kmh, 1) <= 0 THEN
            RAISE EXCEPTION 'default speeds must be > 0 km/h (walk %, drive %)', p_walk_kmh, p_drive_kmh;
        END IF;
        INSERT INTO road_speed (class, walk_kmh, drive_kmh)
        VALUES ('*', COALESCE(p_walk_kmh, 5), COALESCE(p_drive_kmh, 20))
        ON CONFLICT (class) DO UPDATE SET walk_kmh = COALESCE(p_walk_kmh, road_speed.walk_kmh),
                                          drive_kmh = COALESCE(p_drive_kmh, road_speed.drive_kmh);
    END IF;
    tol := GREATEST(p_end_snap_m, p_snap_m);
    DELETE FROM road_edges;
    DELETE FROM road_vertices;
    DROP TABLE IF EXISTS road_graph_parts, road_graph_ends, road_graph_junctions, road_graph_moved,
        road_graph_pieces;

    CREATE TEMP TABLE road_graph_parts ON COMMIT DROP AS
    SELECT row_number() OVER (ORDER BY r.id, d.path) AS pid, r.id AS road_id, r.class, r.bridge, d.geom
      FROM roads r CROSS JOIN LATERAL ST_Dump(r.geom_4548) d
     WHERE NOT ST_IsEmpty(d.geom) AND ST_Length(d.geom) > 0;
    -- (indexes of the temporary tables through EXECUTE: not schema objects)
    EXECUTE 'CREATE INDEX ON road_graph_parts USING gist (geom)';

    -- 1. ends closer than the tolerance to each other: one cluster
    CREATE TEMP TABLE road_graph_ends ON COMMIT DROP AS
    SELECT e.pid, e.k, e.pt, ST_ClusterDBSCAN(e.pt, eps := tol, minpoints := 1) OVER () AS cid
      FROM (SELECT p.pid, x.k, x.pt FROM road_graph_parts p
             CROSS JOIN LATERAL (VALUES (0, ST_StartPoint(p.geom)), (1, ST_EndPoint(p.geom))) x(k, pt)) e;

    -- 2. a cluster's junction: its centroid, moved onto the nearest at-grade road (not its own)
    CREATE TEMP TABLE road_graph_junctions ON COMMIT DROP AS
    SELECT c.cid, COALESCE(s.pt, c.pt) AS pt
      FROM (SELECT cid, ST_Centroid(ST_Collect(pt)) AS pt, array_agg(DISTINCT pid) AS pids
              FROM road_graph_ends GROUP BY cid) c
      LEFT JOIN LATERAL (
          SELECT ST_ClosestPoint(p.geom, c.pt) AS pt FROM road_graph_parts p
           WHERE NOT p.bridge AND p.pid <> ALL (c.pids) AND ST_DWithin(p.geom, c.pt, tol)
           ORDER BY p.geom <-> c.pt, p.pid LIMIT 1) s ON true;
    EXECUTE 'CREATE INDEX ON road_graph_junctions USING gist (pt)';

    -- 3. ends moved to their junctions; at-grade roads get a vertex at the junctions near them
    CREATE TEMP TABLE road_graph_moved ON COMMIT DROP AS
    SELECT p.pid, p.road_id, p.class, p.bridge,
           CASE WHEN p.bridge OR j.pts IS NULL THEN m.geom ELSE ST_Snap(m.geom, j.pts, tol) END AS geom
      FROM road_graph_parts p
      JOIN road_graph_ends es ON es.pid = p.pid AND es.k = 0
      JOIN road_graph_junctions js ON js.cid = es.cid
      JOIN road_graph_ends ee ON ee.pid = p.pid AND ee.k = 1
      JOIN road_graph_junctions je ON je.cid = ee.cid
     CROSS JOIN LATERAL (SELECT ST_SetPoint(ST_SetPoint(p.geom, 0, js.pt), ST_NPoints(p.geom) - 1, je.pt) AS geom) m
     CROSS JOIN LATERAL (SELECT ST_Collect(x.pt) AS pts FROM road_graph_junctions x
                          WHERE ST_DWithin(x.pt, m.geom, tol)) j;
    DELETE FROM road_graph_moved WHERE ST_IsEmpty(geom) OR ST_Length(geom) <= p_snap_m;
    EXECUTE 'CREATE INDEX ON road_graph_moved USING gist (geom)';

    CREATE TEMP TABLE road_graph_pieces ON COMMIT DROP AS
    WITH ground AS (
        SELECT (ST_Dump(ST_Node(ST_Collect(geom)))).geom AS geom FROM road_graph_moved WHERE NOT bridge
    ),
    -- split at every junction lying on a piece (T-junctions, bridge ends)
    ground_split AS (
        SELECT CASE WHEN j.pts IS NOT NULL THEN ST_Split(ST_Snap(g.geom, j.pts, p_snap_m), j.pts)
                    ELSE g.geom END AS geom
          FROM ground g
         CROSS JOIN LATERAL (SELECT ST_Collect(x.pt) AS pts FROM road_graph_junctions x
                              WHERE ST_DWithin(x.pt, g.geom, p_snap_m)
                                AND NOT ST_DWithin(x.pt, ST_StartPoint(g.geom), p_snap_m)
                                AND NOT ST_DWithin(x.pt, ST_EndPoint(g.geom), p_snap_m)) j
    ),
    pieces AS (
        SELECT (ST_Dump(geom)).geom AS geom FROM ground_split
        UNION ALL SELECT geom FROM road_graph_moved WHERE bridge
    )
    SELECT row_number() OVER (ORDER BY src.road_id, ST_XMin(p.geom), ST_YMin(p.geom)) AS id,
           src.road_id, src.class, p.geom
      FROM pieces p
      -- the road a piece came from: the (snapped) road nearest its midpoint
      CROSS JOIN LATERAL (
          SELECT a.road_id, a.class FROM road_graph_moved a
           WHERE ST_DWithin(a.geom, ST_LineInterpolatePoint(p.geom, 0.5), tol + 0.05)
           ORDER BY a.geom <-> ST_LineInterpolatePoint(p.geom, 0.5), a.road_id LIMIT 1) src
     WHERE ST_GeometryType(p.geom) = 'ST_LineString' AND ST_Length(p.geom) > p_snap_m
       AND NOT (ST_Length(p.geom) <= tol
                AND ST_DWithin(ST_StartPoint(p.geom), ST_EndPoint(p.geom), p_snap_m));

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
    DROP TABLE road_graph_parts, road_graph_ends, road_graph_junctions, road_graph_moved, road_graph_pieces;
    RETURN n;
END $$;

REVOKE EXECUTE ON FUNCTION road_graph_rebuild(double precision, double precision, double precision,
                                              double precision) FROM PUBLIC;
