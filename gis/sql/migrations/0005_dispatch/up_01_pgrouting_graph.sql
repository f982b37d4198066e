-- Migration 0005_dispatch: the road graph (pgRouting) built from the roads layer.
-- pgRouting is not a trusted extension: `onemap db up` creates it as the superuser
-- (gis/sql/roles/roles.sql); this migration creates it only when it may.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgrouting') THEN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper) THEN
            CREATE EXTENSION pgrouting;
        ELSE
            RAISE EXCEPTION 'extension pgrouting is not installed in database %', current_database()
                USING HINT = 'install Debian postgresql-15-pgrouting (scripts/install-system-deps.sh), then '
                             '`onemap db up` (embedded) or `onemap db roles --apply` / as a superuser: '
                             'CREATE EXTENSION pgrouting';
        END IF;
    END IF;
END $$;

-- Travel speeds per road class and mode (walk: grid workers on foot, drive: vehicles). Class '*'
-- is the default for classes not listed. Change a speed, then SELECT road_graph_rebuild().
CREATE TABLE road_speed (
    class      text PRIMARY KEY CHECK (class <> ''),
    drive_kmh  double precision NOT NULL CHECK (drive_kmh > 0),
    walk_kmh   double precision NOT NULL CHECK (walk_kmh > 0)
);
INSERT INTO road_speed (class, drive_kmh, walk_kmh) VALUES
    ('primary', 40, 5), ('secondary', 30, 5), ('tertiary', 25, 5),
    ('residential', 20, 5), ('service', 10, 5), ('*', 20, 5);

-- Graph vertices: road ends and crossings (points closer than 1 cm are one vertex).
CREATE TABLE road_vertices (
    id         bigint PRIMARY KEY,
    geom_4548  geometry(Point, 4548) NOT NULL
);
CREATE INDEX road_vertices_geom_4548_gix ON road_vertices USING gist (geom_4548);

-- Graph edges: the roads split at every crossing of two at-grade roads and at the ends of
-- bridges (a bridge meets the roads below it only at its ends). Undirected (the roads layer has
-- no one-way streets); cost in seconds per mode from road_speed, length in metres.
CREATE TABLE road_edges (
    id         bigint PRIMARY KEY,
    road_id    text NOT NULL,
    class      text,
    source     bigint NOT NULL REFERENCES road_vertices (id),
    target     bigint NOT NULL REFERENCES road_vertices (id),
    length_m   double precision NOT NULL CHECK (length_m >= 0),
    walk_s     double precision NOT NULL CHECK (walk_s >= 0),
    drive_s    double precision NOT NULL CHECK (drive_s >= 0),
    geom_4548  geometry(LineString, 4548) NOT NULL
);
CREATE INDEX road_edges_source_idx ON road_edges (source);
CREATE INDEX road_edges_target_idx ON road_edges (target);
CREATE INDEX road_edges_geom_4548_gix ON road_edges USING gist (geom_4548);

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

-- Shortest paths over the graph (pgr_dijkstra, undirected) from each start vertex to p_end, by
-- travel time of p_mode ('walk' | 'drive'): one row per reachable start, with the path's length,
-- time and geometry (oriented start -> end; NULL when the start is the end vertex).
CREATE FUNCTION road_route_costs(p_starts bigint[], p_end bigint, p_mode text)
RETURNS TABLE (start_vid bigint, network_m double precision, eta_s double precision,
               geom_4548 geometry)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_mode NOT IN ('walk', 'drive') THEN
        RAISE EXCEPTION 'unknown travel mode %', p_mode USING HINT = 'walk or drive';
    END IF;
    IF p_end IS NULL OR p_starts IS NULL OR cardinality(p_starts) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT s.vid, 0::double precision, 0::double precision, NULL::geometry
      FROM unnest(p_starts) AS s(vid) WHERE s.vid = p_end
    UNION ALL
    SELECT d.start_vid, sum(e.length_m), sum(d.cost),
           ST_MakeLine(CASE WHEN e.source = d.node THEN e.geom_4548 ELSE ST_Reverse(e.geom_4548) END
                       ORDER BY d.path_seq)
      FROM pgr_dijkstra(format('SELECT id, source, target, %I AS cost FROM road_edges', p_mode || '_s'),
                        (SELECT array_agg(DISTINCT v) FROM unnest(p_starts) v WHERE v <> p_end),
                        p_end, false) d
      JOIN road_edges e ON e.id = d.edge
     GROUP BY d.start_vid;
END $$;
