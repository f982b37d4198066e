-- Migration 0007_access: walking access to facilities over the road graph (0005_dispatch).
--
-- Walking distances are metres along road_edges (length_m, undirected) plus two straight legs:
-- building (ST_PointOnSurface) -> its nearest graph vertex, and facility -> its nearest vertex.
-- Times are distance / walking speed. The speeds and minutes a caller may ask for are fixed
-- (access_speeds(), 5/10/15 min): published counts at arbitrary thresholds could be differenced
-- into small groups, so suppression (access_publish) looks at every threshold at once.

-- Walking speeds (m/s) the access figures are published for: elderly 0.8, default 1.2.
CREATE FUNCTION access_speeds() RETURNS double precision[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[0.8, 1.2]::double precision[]
$$;

-- The graph vertex nearest each building and the straight leg to it (NULL when no graph). The
-- KNN index finds the 4 nearest; ties in distance go to the smaller vertex id.
CREATE VIEW building_road_vertex AS
SELECT b.id AS building_id, b.community_id, v.id AS vid, v.leg_m
  FROM buildings b
  CROSS JOIN LATERAL (SELECT ST_PointOnSurface(b.geom_4548) AS pt) p
  LEFT JOIN LATERAL (
      SELECT k.id, k.leg_m FROM (
          SELECT rv.id, ST_Distance(rv.geom_4548, p.pt) AS leg_m
            FROM road_vertices rv ORDER BY rv.geom_4548 <-> p.pt LIMIT 4) k
       ORDER BY k.leg_m, k.id LIMIT 1) v ON true;

-- Per graph vertex: the nearest facility of p_kind (facility leg + network metres) — one
-- pgr_dijkstraCost from the facilities' vertices to every vertex. Unreachable vertices: no row.
CREATE FUNCTION access_vertex_m(p_kind text)
RETURNS TABLE (vid bigint, facility_id text, walk_m double precision)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    fac jsonb;
    starts bigint[];
BEGIN
    SELECT jsonb_agg(jsonb_build_object('id', f.id, 'vid', v.id, 'leg', v.leg_m)), array_agg(DISTINCT v.id)
      INTO fac, starts
      FROM facilities f
      CROSS JOIN LATERAL (
          SELECT k.id, k.leg_m FROM (
              SELECT rv.id, ST_Distance(rv.geom_4548, f.geom_4548) AS leg_m
                FROM road_vertices rv ORDER BY rv.geom_4548 <-> f.geom_4548 LIMIT 4) k
           ORDER BY k.leg_m, k.id LIMIT 1) v
     WHERE f.kind = p_kind;
    IF starts IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH f AS (
        SELECT x.id, x.vid, x.leg FROM jsonb_to_recordset(fac) AS x(id text, vid bigint, leg double precision)
    ),
    pairs AS (
        SELECT d.start_vid, d.end_vid, d.agg_cost
          FROM pgr_dijkstraCost('SELECT id, source, target, length_m AS cost FROM road_edges',
                                starts, (SELECT array_agg(rv.id) FROM road_vertices rv), false) d
        UNION ALL
        SELECT s, s, 0::double precision FROM unnest(starts) s
    )
    SELECT DISTINCT ON (p.end_vid) p.end_vid, f.id, f.leg + p.agg_cost
      FROM pairs p JOIN f ON f.vid = p.start_vid
     ORDER BY p.end_vid, f.leg + p.agg_cost, f.id;
END $$;

-- Per building: its vertex, its leg, the nearest facility of p_kind and the walking metres to it
-- (NULL when no facility is reachable from the building's vertex).
CREATE FUNCTION access_buildings(p_kind text)
RETURNS TABLE (building_id text, community_id text, vid bigint, leg_m double precision,
               facility_id text, walk_m double precision)
LANGUAGE sql STABLE AS $$
    SELECT b.building_id, b.community_id, b.vid, b.leg_m, a.facility_id, b.leg_m + a.walk_m
      FROM building_road_vertex b
      LEFT JOIN access_vertex_m(p_kind) a ON a.vid = b.vid
$$;

-- Which of the cumulative counts c[1..k] (thresholds in increasing order) of a group of n people
-- may be published: c[i], n - c[i] (the people outside) and c[i] minus the previous published
-- count are each 0 or at least 5, so no difference of published figures isolates 1 to 4 people
-- (0 is published: "everyone within 15 minutes" discloses nothing about anyone).
CREATE FUNCTION access_publish(p_n integer, p_counts integer[]) RETURNS boolean[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    res boolean[] := '{}';
    prev integer := 0;
    c integer;
BEGIN
    FOREACH c IN ARRAY coalesce(p_counts, '{}') LOOP
        IF (c = 0 OR c >= 5) AND (p_n - c = 0 OR p_n - c >= 5) AND (c - prev = 0 OR c - prev >= 5) THEN
            res := res || true;
            prev := c;
        ELSE
            res := res || false;
        END IF;
    END LOOP;
    RETURN res;
END $$;

-- Per community and group (total, age_80_plus, disabled, low_income): residents and residents
-- within 5/10/15 minutes at p_speed, suppressed. The group size is what population_by_community
-- publishes (total, age_80_plus) or NULL below 5 (disabled, low_income); a count within T is
-- published only when access_publish() allows it over the thresholds of every speed at once.
-- Reads restricted.persons with the owner's rights; returns aggregates only.
CREATE FUNCTION access_by_community(p_kind text, p_speed double precision)
RETURNS TABLE (community_id text, name text, grp text, residents integer, within_5 integer,
               within_10 integer, within_15 integer, suppressed text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    thresholds double precision[];
    r record;
    ok boolean[];
    vals integer[];
    hid text[];
    j integer;
    pos integer;
BEGIN
    IF p_speed IS NULL OR NOT (p_speed = ANY (access_speeds())) THEN
        RAISE EXCEPTION 'speed must be one of %', access_speeds() USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM facility_kind fk WHERE fk.kind = p_kind) THEN
        RAISE EXCEPTION 'unknown facility kind %', p_kind USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(DISTINCT s * 60 * m ORDER BY s * 60 * m) INTO thresholds
      FROM unnest(access_speeds()) s CROSS JOIN unnest(ARRAY[5, 10, 15]) m;
    FOR r IN
        WITH a AS MATERIALIZED (SELECT x.building_id, x.walk_m FROM access_buildings(p_kind) x),
        per_b AS (
            SELECT b.community_id, p.building_id, g.grp, min(a.walk_m) AS walk_m, count(*)::integer AS cnt
              FROM restricted.persons p
              JOIN buildings b ON b.id = p.building_id
              LEFT JOIN a ON a.building_id = p.building_id
              CROSS JOIN LATERAL (VALUES
                  ('total', true),
                  ('age_80_plus', population_ref_year() - p.birth_year >= 80),
                  ('disabled', 'disabled' = ANY (p.care_flags)),
                  ('low_income', 'low_income' = ANY (p.care_flags))) AS g(grp, member)
             WHERE g.member AND b.community_id IS NOT NULL
             GROUP BY 1, 2, 3
        ),
        cum AS (
            SELECT pb.community_id, pb.grp, sum(pb.cnt)::integer AS n FROM per_b pb GROUP BY 1, 2
        ),
        cs AS (
            SELECT pb.community_id, pb.grp, u.i, coalesce(sum(pb.cnt) FILTER (WHERE pb.walk_m <= u.t), 0)::integer AS c
              FROM per_b pb CROSS JOIN unnest(thresholds) WITH ORDINALITY AS u(t, i)
             GROUP BY 1, 2, 3
        ),
        cs_arr AS (
            SELECT cs.community_id, cs.grp, array_agg(cs.c ORDER BY cs.i) AS c FROM cs GROUP BY 1, 2
        )
        SELECT c.id AS community_id, c.name, g.grp, g.ord, coalesce(cum.n, 0) AS n,
               coalesce(ca.c, array_fill(0, ARRAY[cardinality(thresholds)])) AS c,
               CASE g.grp WHEN 'total' THEN pv.total WHEN 'age_80_plus' THEN pv.age_80_plus END AS published_n
          FROM communities c
          CROSS JOIN (VALUES ('total', 1), ('age_80_plus', 2), ('disabled', 3), ('low_income', 4)) AS g(grp, ord)
          LEFT JOIN cum ON cum.community_id = c.id AND cum.grp = g.grp
          LEFT JOIN cs_arr ca ON ca.community_id = c.id AND ca.grp = g.grp
          LEFT JOIN population_by_community pv ON pv.community_id = c.id
         ORDER BY c.id, g.ord
    LOOP
        ok := access_publish(r.n, r.c);
        vals := '{}';
        hid := '{}';
        FOREACH j IN ARRAY ARRAY[5, 10, 15] LOOP
            pos := array_position(thresholds, p_speed * 60 * j);
            IF ok[pos] THEN
                vals := vals || r.c[pos];
            ELSE
                vals := vals || NULL::integer;
                hid := hid || ('within_' || j)::text;
            END IF;
        END LOOP;
        community_id := r.community_id;
        name := r.name;
        grp := r.grp;
        residents := CASE WHEN r.grp IN ('total', 'age_80_plus') THEN r.published_n
                          WHEN r.n >= 5 THEN r.n END;
        IF residents IS NULL THEN
            hid := 'residents'::text || hid;
        END IF;
        within_5 := vals[1];
        within_10 := vals[2];
        within_15 := vals[3];
        suppressed := hid;
        RETURN NEXT;
    END LOOP;
END $$;

-- Ranked new sites for facilities of p_kind (maximal coverage, greedy): candidates are the graph
-- vertices; a candidate covers a building not yet within p_minutes at p_speed of a facility when
-- building leg + network metres <= p_speed * 60 * p_minutes. Each round takes the candidate adding
-- the most residents (ties: smaller vertex id), until p_n sites or a gain below 5. Gains are
-- published rounded to a multiple of 5 (they are sums over buildings whose own counts may be
-- suppressed). Reads restricted.persons with the owner's rights; returns aggregates only.
CREATE FUNCTION access_sites(p_kind text, p_speed double precision, p_minutes integer, p_n integer)
RETURNS TABLE (rank integer, vid bigint, residents_added integer, buildings_added integer,
               geom_4548 geometry)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    reach double precision;
    bv bigint[];
    bleg double precision[];
    starts bigint[];
    cand bigint[];
    bix integer[];
    w integer[];
    covered boolean[];
    best bigint;
    gain integer;
    nb integer;
    j integer;
    k integer := 0;
BEGIN
    IF p_speed IS NULL OR NOT (p_speed = ANY (access_speeds())) THEN
        RAISE EXCEPTION 'speed must be one of %', access_speeds() USING ERRCODE = '22023';
    END IF;
    IF p_minutes IS NULL OR NOT (p_minutes = ANY (ARRAY[5, 10, 15])) THEN
        RAISE EXCEPTION 'minutes must be 5, 10 or 15' USING ERRCODE = '22023';
    END IF;
    IF p_n IS NULL OR p_n < 1 OR p_n > 50 THEN
        RAISE EXCEPTION 'n must be between 1 and 50' USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM facility_kind fk WHERE fk.kind = p_kind) THEN
        RAISE EXCEPTION 'unknown facility kind %', p_kind USING ERRCODE = '22023';
    END IF;
    reach := p_speed * 60 * p_minutes;
    -- buildings with residents not yet within reach of a facility (index i: bv[i], bleg[i], w[i])
    SELECT array_agg(a.vid ORDER BY a.building_id), array_agg(a.leg_m ORDER BY a.building_id),
           array_agg(pc.n ORDER BY a.building_id)
      INTO bv, bleg, w
      FROM access_buildings(p_kind) a
      JOIN (SELECT pp.building_id, count(*)::integer AS n FROM restricted.persons pp GROUP BY 1) pc
        ON pc.building_id = a.building_id
     WHERE (a.walk_m IS NULL OR a.walk_m > reach) AND a.vid IS NOT NULL AND a.leg_m <= reach;
    IF w IS NULL THEN
        RETURN;
    END IF;
    covered := array_fill(false, ARRAY[cardinality(w)]);
    starts := ARRAY(SELECT DISTINCT x FROM unnest(bv) x);
    -- (candidate vertex, building index) for every vertex within reach of the building
    WITH dd AS (
        SELECT d.from_v, d.node, d.agg_cost
          FROM pgr_drivingDistance('SELECT id, source, target, length_m AS cost FROM road_edges',
                                   starts, reach, false) d
        UNION
        SELECT x, x, 0::double precision FROM unnest(starts) x
    ),
    b AS (SELECT i, bv[i] AS v, bleg[i] AS leg FROM generate_subscripts(bv, 1) AS i)
    SELECT array_agg(dd.node ORDER BY dd.node, b.i), array_agg(b.i ORDER BY dd.node, b.i)
      INTO cand, bix
      FROM b JOIN dd ON dd.from_v = b.v
     WHERE b.leg + dd.agg_cost <= reach;
    IF cand IS NULL THEN
        RETURN;
    END IF;
    WHILE k < p_n LOOP
        best := NULL;
        SELECT x.c, sum(w[x.b])::integer, count(*)::integer INTO best, gain, nb
          FROM unnest(cand, bix) AS x(c, b)
         WHERE NOT covered[x.b]
         GROUP BY x.c
         ORDER BY 2 DESC, x.c
         LIMIT 1;
        EXIT WHEN best IS NULL OR gain < 5;
        k := k + 1;
        FOR j IN SELECT x.b FROM unnest(cand, bix) AS x(c, b) WHERE x.c = best LOOP
            covered[j] := true;
        END LOOP;
        rank := k;
        vid := best;
        residents_added := (round(gain / 5.0) * 5)::integer;
        buildings_added := nb;
        geom_4548 := (SELECT rv.geom_4548 FROM road_vertices rv WHERE rv.id = best);
        RETURN NEXT;
    END LOOP;
END $$;
