-- Migration 0001_overlays: geofence episodes and alarms.
-- Episodes that deserve an alarm, from the fixes in [p_from, p_to):
--  left_patrol_area: consecutive fixes of a worker farther than p_tolerance_m from all of its
--    patrol_area geofences, lasting >= p_min_outside_s (an inside fix or a gap > p_max_gap_s ends it);
--  no_parking_dwell: consecutive fixes of a worker whose kind is in p_dwell_kinds inside the same
--    no_parking geofence for >= its max_dwell_min (or p_default_dwell_min).
CREATE FUNCTION geofence_episodes(
    p_from timestamptz, p_to timestamptz,
    p_min_outside_s double precision DEFAULT 60, p_tolerance_m double precision DEFAULT 10,
    p_max_gap_s double precision DEFAULT 300, p_default_dwell_min double precision DEFAULT 15,
    p_dwell_kinds text[] DEFAULT '{vehicle}')
RETURNS TABLE (kind text, worker_id text, device_id text, geofence_id text, t_start timestamptz,
               t_end timestamptz, raised_at timestamptz, n_fixes bigint, geom geometry)
LANGUAGE sql STABLE AS $$
    WITH fx AS MATERIALIZED (
        SELECT f.worker_id, f.device_id, f.t, f.geom, f.geom_4548, w.kind AS worker_kind
          FROM gps_fixes f JOIN workers w ON w.id = f.worker_id
         WHERE f.t >= p_from AND f.t < p_to
    ),
    areas AS (SELECT g.worker_id, min(g.id) AS geofence_id, ST_Union(g.geom_4548) AS geom_4548
                FROM geofences g WHERE g.kind = 'patrol_area' AND g.worker_id IS NOT NULL
               GROUP BY g.worker_id),
    pa AS (
        SELECT fx.*, a.geofence_id, NOT ST_DWithin(a.geom_4548, fx.geom_4548, p_tolerance_m) AS outside
          FROM fx JOIN areas a ON a.worker_id = fx.worker_id
    ),
    pa_isl AS (
        SELECT b.*, sum(b.brk) OVER (PARTITION BY b.worker_id ORDER BY b.t) AS island
          FROM (SELECT pa.*, CASE WHEN lag(pa.outside) OVER w IS DISTINCT FROM pa.outside
                                    OR extract(epoch FROM pa.t - lag(pa.t) OVER w) > p_max_gap_s
                                  THEN 1 ELSE 0 END AS brk
                  FROM pa WINDOW w AS (PARTITION BY pa.worker_id ORDER BY pa.t)) b
    ),
    pa_ep AS (
        SELECT 'left_patrol_area'::text AS kind, worker_id, min(device_id) AS device_id,
               min(geofence_id) AS geofence_id, min(t) AS t_start, max(t) AS t_end,
               min(t) + make_interval(secs => p_min_outside_s) AS raised_at, count(*) AS n_fixes,
               (array_agg(geom ORDER BY t))[1] AS geom
          FROM pa_isl WHERE outside
         GROUP BY worker_id, island
        HAVING extract(epoch FROM max(t) - min(t)) >= p_min_outside_s
    ),
    np AS (
        SELECT fx.*, z.id AS zone_id, z.max_dwell_min
          FROM fx
          LEFT JOIN LATERAL (SELECT g.id, g.max_dwell_min FROM geofences g
                              WHERE g.kind = 'no_parking' AND ST_Intersects(g.geom_4548, fx.geom_4548)
                              ORDER BY g.id LIMIT 1) z ON true
         WHERE fx.worker_kind = ANY (p_dwell_kinds)
    ),
    np_isl AS (
        SELECT b.*, sum(b.brk) OVER (PARTITION BY b.worker_id ORDER BY b.t) AS island
          FROM (SELECT np.*, CASE WHEN lag(np.zone_id) OVER w IS DISTINCT FROM np.zone_id
                                    OR extract(epoch FROM np.t - lag(np.t) OVER w) > p_max_gap_s
                                  THEN 1 ELSE 0 END AS brk
                  FROM np WINDOW w AS (PARTITION BY np.worker_id ORDER BY np.t)) b
    ),
    np_ep AS (
        SELECT 'no_parking_dwell'::text, worker_id, min(device_id), zone_id, min(t), max(t),
               min(t) + make_interval(secs => COALESCE(max(max_dwell_min), p_default_dwell_min) * 60),
               count(*), (array_agg(geom ORDER BY t))[1]
          FROM np_isl WHERE zone_id IS NOT NULL
         GROUP BY worker_id, island, zone_id
        HAVING extract(epoch FROM max(t) - min(t))
               >= COALESCE(max(max_dwell_min), p_default_dwell_min) * 60
    )
    SELECT * FROM pa_ep UNION ALL SELECT * FROM np_ep
$$;

-- Merge episodes of [p_from, p_to) into alarms: an episode overlapping (or within p_max_gap_s of)
-- an existing alarm of the same kind/worker/geofence extends it; others are inserted (NOTIFY).
-- Returns the number of new alarms.
CREATE FUNCTION raise_geofence_alarms(
    p_from timestamptz, p_to timestamptz,
    p_min_outside_s double precision DEFAULT 60, p_tolerance_m double precision DEFAULT 10,
    p_max_gap_s double precision DEFAULT 300, p_default_dwell_min double precision DEFAULT 15,
    p_dwell_kinds text[] DEFAULT '{vehicle}')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS _episodes (
        kind text, worker_id text, device_id text, geofence_id text, t_start timestamptz,
        t_end timestamptz, raised_at timestamptz, n_fixes bigint, geom geometry,
        alarm_id bigint) ON COMMIT DROP;
    TRUNCATE _episodes;
    INSERT INTO _episodes
    SELECT e.*, (SELECT a.id FROM alarms a
                  WHERE a.kind = e.kind AND a.worker_id IS NOT DISTINCT FROM e.worker_id
                    AND a.geofence_id IS NOT DISTINCT FROM e.geofence_id
                    AND a.t_start <= e.t_end + make_interval(secs => p_max_gap_s)
                    AND a.t_end >= e.t_start - make_interval(secs => p_max_gap_s)
                  ORDER BY a.t_start LIMIT 1)
      FROM geofence_episodes(p_from, p_to, p_min_outside_s, p_tolerance_m, p_max_gap_s,
                             p_default_dwell_min, p_dwell_kinds) e;
    UPDATE alarms a SET t_end = greatest(a.t_end, x.t_end),
                        details = a.details || jsonb_build_object('n_fixes_last_run', x.n_fixes)
      FROM (SELECT alarm_id, max(t_end) AS t_end, max(n_fixes) AS n_fixes FROM _episodes
             WHERE alarm_id IS NOT NULL GROUP BY alarm_id) x
     WHERE a.id = x.alarm_id AND x.t_end > a.t_end;
    INSERT INTO alarms (kind, worker_id, device_id, geofence_id, t_start, t_end, raised_at, details, geom)
    SELECT kind, worker_id, device_id, geofence_id, t_start, t_end, raised_at,
           jsonb_build_object('n_fixes', n_fixes), geom
      FROM _episodes WHERE alarm_id IS NULL
    ON CONFLICT ON CONSTRAINT alarms_episode_uq DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Incremental: fixes newer than the watermark (re-reading p_lookback before it so episodes in
-- progress are seen whole); advances the watermark to the newest fix. Returns new alarms.
CREATE FUNCTION process_geofence_alarms(p_lookback interval DEFAULT interval '2 hours',
                                        p_name text DEFAULT 'geofence')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    wm timestamptz;
    newest timestamptz;
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('onemap.alarm_watermark.' || p_name));
    SELECT t INTO wm FROM alarm_watermark WHERE name = p_name;
    SELECT max(t) INTO newest FROM worker_positions;
    IF newest IS NULL OR (wm IS NOT NULL AND newest <= wm) THEN
        RETURN 0;
    END IF;
    n := raise_geofence_alarms(COALESCE(wm - p_lookback, '-infinity'::timestamptz),
                               newest + interval '1 microsecond');
    INSERT INTO alarm_watermark (name, t, updated_at) VALUES (p_name, newest, now())
    ON CONFLICT (name) DO UPDATE SET t = EXCLUDED.t, updated_at = EXCLUDED.updated_at;
    RETURN n;
END $$;

CREATE FUNCTION alarms_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    r record;
BEGIN
    SELECT count(*) INTO n FROM new_alarms;
    IF n <= 20 THEN
        FOR r IN SELECT * FROM new_alarms ORDER BY id LOOP
            PERFORM onemap_notify(jsonb_build_object(
                'type', 'alarm', 'id', r.id, 'kind', r.kind, 'worker_id', r.worker_id,
                'device_id', r.device_id, 'geofence_id', r.geofence_id, 't_start', r.t_start,
                'raised_at', r.raised_at,
                'lon', round(ST_X(r.geom)::numeric, 7), 'lat', round(ST_Y(r.geom)::numeric, 7)));
        END LOOP;
    ELSE
        PERFORM onemap_notify(jsonb_build_object('type', 'alarm', 'bulk', true, 'count', n,
            'first_id', (SELECT min(id) FROM new_alarms), 'last_id', (SELECT max(id) FROM new_alarms)));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alarms_after_insert AFTER INSERT ON alarms
    REFERENCING NEW TABLE AS new_alarms FOR EACH STATEMENT EXECUTE FUNCTION alarms_after_insert();
