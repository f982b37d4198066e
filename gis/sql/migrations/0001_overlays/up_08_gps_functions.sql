-- Migration 0001_overlays: GPS partitions, position trigger, track cleaning, shifts, check-ins, shift tracks.
-- Monthly (UTC) partitions gps_fixes_pYYYYMM covering [p_from, p_to]; rows already caught by
-- the default partition in a new month's range are moved into it. Returns partitions created.
CREATE FUNCTION ensure_gps_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    m timestamp := date_trunc('month', p_from AT TIME ZONE 'UTC');
    last_m timestamp := date_trunc('month', p_to AT TIME ZONE 'UTC');
    lo timestamptz;
    hi timestamptz;
    name text;
    created integer := 0;
    moved bigint;
BEGIN
    IF p_from IS NULL OR p_to IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('onemap.gps_partitions'));
    WHILE m <= last_m LOOP
        name := format('gps_fixes_p%s', to_char(m, 'YYYYMM'));
        IF to_regclass(name) IS NULL THEN
            lo := m AT TIME ZONE 'UTC';
            hi := (m + interval '1 month') AT TIME ZONE 'UTC';
            CREATE TEMP TABLE IF NOT EXISTS _gps_moved (LIKE gps_fixes) ON COMMIT DROP;
            TRUNCATE _gps_moved;
            WITH d AS (DELETE FROM gps_fixes_default WHERE t >= lo AND t < hi
                       RETURNING device_id, worker_id, t, speed, accuracy, geom)
            INSERT INTO _gps_moved (device_id, worker_id, t, speed, accuracy, geom) SELECT * FROM d;
            GET DIAGNOSTICS moved = ROW_COUNT;
            EXECUTE format('CREATE TABLE %I PARTITION OF gps_fixes FOR VALUES FROM (%L) TO (%L)',
                           name, lo, hi);
            IF moved > 0 THEN
                PERFORM set_config('onemap.quiet', 'on', true);
                INSERT INTO gps_fixes (device_id, worker_id, t, speed, accuracy, geom)
                SELECT device_id, worker_id, t, speed, accuracy, geom FROM _gps_moved;
            END IF;
            created := created + 1;
        END IF;
        m := m + interval '1 month';
    END LOOP;
    RETURN created;
END $$;

-- Latest position per worker (KNN target) + throttled 'position' NOTIFY: one statement-level
-- trigger per INSERT/COPY batch, messages of at most 40 positions, nothing for stale fixes.
CREATE FUNCTION gps_fixes_after_insert() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_chunks jsonb[];
    v_chunk jsonb;
    v_total integer;
BEGIN
    WITH latest AS (
        SELECT DISTINCT ON (f.worker_id) f.worker_id, f.device_id, f.t, f.speed, f.accuracy, f.geom
          FROM new_fixes f
         WHERE f.worker_id IS NOT NULL
         ORDER BY f.worker_id, f.t DESC
    ), upserted AS (
        INSERT INTO worker_positions AS wp (worker_id, device_id, t, speed, accuracy, geom)
        SELECT l.* FROM latest l JOIN workers w ON w.id = l.worker_id
        ON CONFLICT (worker_id) DO UPDATE
           SET device_id = EXCLUDED.device_id, t = EXCLUDED.t, speed = EXCLUDED.speed,
               accuracy = EXCLUDED.accuracy, geom = EXCLUDED.geom
         WHERE EXCLUDED.t > wp.t
        RETURNING wp.worker_id, wp.device_id, wp.t, wp.speed, wp.geom
    ), numbered AS (
        SELECT u.*, (row_number() OVER (ORDER BY u.worker_id) - 1) / 40 AS grp,
               count(*) OVER () AS total
          FROM upserted u
    )
    SELECT array_agg(c.chunk ORDER BY c.grp), max(c.total) INTO v_chunks, v_total
      FROM (SELECT grp, max(total) AS total,
                   jsonb_agg(jsonb_build_object(
                       'worker_id', worker_id, 'device_id', device_id, 't', t,
                       'lon', round(ST_X(geom)::numeric, 7), 'lat', round(ST_Y(geom)::numeric, 7),
                       'speed', speed) ORDER BY worker_id) AS chunk
              FROM numbered GROUP BY grp) c;
    IF v_chunks IS NULL OR coalesce(current_setting('onemap.quiet', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    FOREACH v_chunk IN ARRAY v_chunks LOOP
        PERFORM onemap_notify(jsonb_build_object('type', 'position', 'count', jsonb_array_length(v_chunk),
                                                 'total', v_total, 'positions', v_chunk));
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER gps_fixes_after_insert AFTER INSERT ON gps_fixes
    REFERENCING NEW TABLE AS new_fixes FOR EACH STATEMENT EXECUTE FUNCTION gps_fixes_after_insert();

-- Rebuild worker_positions from gps_fixes (after bulk loads done with triggers off).
CREATE FUNCTION refresh_worker_positions() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM worker_positions;
    INSERT INTO worker_positions (worker_id, device_id, t, speed, accuracy, geom)
    SELECT w.id, f.device_id, f.t, f.speed, f.accuracy, f.geom
      FROM workers w
      CROSS JOIN LATERAL (SELECT * FROM gps_fixes g WHERE g.worker_id = w.id
                           ORDER BY g.t DESC LIMIT 1) f;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Track cleaning, one pass per worker ordered by time (see docs/postgis.md "Tracks"):
--  * a fix further than p_max_gap_s after the previous one starts a new segment ('gap');
--  * implied speed from the anchor (last kept fix) > p_max_speed: 'spike' (ignored); after
--    p_reanchor_n consecutive spikes the position is accepted as a jump ('reanchor', 0 m);
--  * a step from the anchor shorter than max(p_min_step_m, p_jitter_k * accuracy): 'jitter';
--  * otherwise 'kept': step_m = distance from the anchor, which moves there.
-- 'start' | 'gap' | 'reanchor' | 'kept' fixes are the track's vertices.
CREATE FUNCTION clean_fixes(
    p_from timestamptz, p_to timestamptz, p_worker text DEFAULT NULL,
    p_max_speed double precision DEFAULT 15, p_jitter_k double precision DEFAULT 1.0,
    p_min_step_m double precision DEFAULT 3, p_max_gap_s double precision DEFAULT 600,
    p_reanchor_n integer DEFAULT 3)
RETURNS TABLE (worker_id text, device_id text, t timestamptz, x double precision,
               y double precision, accuracy real, status text, step_m double precision, seg integer)
LANGUAGE plpgsql STABLE ROWS 500000 AS $$
DECLARE
    r record;
    cur_worker text := NULL;
    ax double precision; ay double precision; at_ts timestamptz;
    prev_t timestamptz;
    n_spike integer := 0;
    d double precision; dt double precision; thr double precision;
BEGIN
    FOR r IN
        SELECT f.worker_id AS w, f.device_id AS dev, f.t AS ft, ST_X(f.geom_4548) AS fx,
               ST_Y(f.geom_4548) AS fy, f.accuracy AS acc
          FROM gps_fixes f
         WHERE f.t >= p_from AND f.t < p_to AND f.worker_id IS NOT NULL
           AND (p_worker IS NULL OR f.worker_id = p_worker)
         ORDER BY f.worker_id, f.t
    LOOP
        worker_id := r.w; device_id := r.dev; t := r.ft; x := r.fx; y := r.fy; accuracy := r.acc;
        IF cur_worker IS DISTINCT FROM r.w THEN
            cur_worker := r.w; seg := 1; n_spike := 0;
            ax := r.fx; ay := r.fy; at_ts := r.ft; prev_t := r.ft;
            status := 'start'; step_m := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF extract(epoch FROM r.ft - prev_t) > p_max_gap_s THEN
            seg := seg + 1; n_spike := 0;
            ax := r.fx; ay := r.fy; at_ts := r.ft; prev_t := r.ft;
            status := 'gap'; step_m := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        prev_t := r.ft;
        d := sqrt((r.fx - ax) ^ 2 + (r.fy - ay) ^ 2);
        dt := extract(epoch FROM r.ft - at_ts);
        IF dt <= 0 OR d / dt > p_max_speed THEN
            IF dt > 0 THEN
                n_spike := n_spike + 1;
            END IF;
            IF n_spike >= p_reanchor_n THEN
                seg := seg + 1; n_spike := 0;
                ax := r.fx; ay := r.fy; at_ts := r.ft;
                status := 'reanchor'; step_m := 0;
            ELSE
                status := CASE WHEN dt <= 0 THEN 'jitter' ELSE 'spike' END; step_m := 0;
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;
        n_spike := 0;
        thr := greatest(p_min_step_m, p_jitter_k * coalesce(r.acc, 0));
        IF d < thr THEN
            status := 'jitter'; step_m := 0;
        ELSE
            status := 'kept'; step_m := d;
            ax := r.fx; ay := r.fy; at_ts := r.ft;
        END IF;
        RETURN NEXT;
    END LOOP;
    RETURN;
END $$;

-- Shifts: a worker's fixes split where consecutive fixes are more than p_gap_s apart.
CREATE FUNCTION worker_shifts(p_from timestamptz, p_to timestamptz, p_gap_s double precision DEFAULT 1800)
RETURNS TABLE (worker_id text, shift_start timestamptz, shift_end timestamptz, n_fixes bigint)
LANGUAGE sql STABLE AS $$
    SELECT s.worker_id, min(s.t), max(s.t), count(*)
      FROM (SELECT b.worker_id, b.t, sum(b.brk) OVER (PARTITION BY b.worker_id ORDER BY b.t) AS shift_no
              FROM (SELECT f.worker_id, f.t,
                           CASE WHEN lag(f.t) OVER w IS NULL
                                  OR extract(epoch FROM f.t - lag(f.t) OVER w) > p_gap_s
                                THEN 1 ELSE 0 END AS brk
                      FROM gps_fixes f
                     WHERE f.t >= p_from AND f.t < p_to AND f.worker_id IS NOT NULL
                    WINDOW w AS (PARTITION BY f.worker_id ORDER BY f.t)) b) s
     GROUP BY s.worker_id, s.shift_no
$$;

-- Visits of checkpoints: fixes within a checkpoint's radius, per worker shift.
CREATE FUNCTION checkpoint_visits(p_from timestamptz, p_to timestamptz,
                                  p_gap_s double precision DEFAULT 1800)
RETURNS TABLE (checkpoint_id text, worker_id text, shift_start timestamptz, shift_end timestamptz,
               first_t timestamptz, last_t timestamptz, n_fixes bigint, min_distance_m double precision)
LANGUAGE sql STABLE AS $$
    WITH shifts AS MATERIALIZED (SELECT * FROM worker_shifts(p_from, p_to, p_gap_s)),
    maxr AS (SELECT COALESCE(max(radius_m), 0) AS r FROM checkpoints),
    hits AS (
        SELECT cp.id AS checkpoint_id, f.worker_id, f.t,
               ST_Distance(cp.geom_4548, f.geom_4548) AS dist
          FROM gps_fixes f, maxr
          JOIN checkpoints cp ON true
         WHERE f.t >= p_from AND f.t < p_to AND f.worker_id IS NOT NULL
           AND ST_DWithin(cp.geom_4548, f.geom_4548, maxr.r)
           AND ST_Distance(cp.geom_4548, f.geom_4548) <= cp.radius_m)
    SELECT h.checkpoint_id, h.worker_id, s.shift_start, s.shift_end, min(h.t), max(h.t), count(*),
           min(h.dist)
      FROM hits h
      JOIN shifts s ON s.worker_id = h.worker_id AND h.t BETWEEN s.shift_start AND s.shift_end
     GROUP BY h.checkpoint_id, h.worker_id, s.shift_start, s.shift_end
$$;

-- Materialise shift_tracks for shifts starting in [p_from, p_to) (replaces those rows).
CREATE FUNCTION derive_shift_tracks(p_from timestamptz, p_to timestamptz,
                                    p_gap_s double precision DEFAULT 1800,
                                    p_max_speed double precision DEFAULT 15,
                                    p_jitter_k double precision DEFAULT 1.0,
                                    p_min_step_m double precision DEFAULT 3)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM shift_tracks WHERE shift_start >= p_from AND shift_start < p_to;
    -- Every CTE is MATERIALIZED: inlined, the per-shift line aggregate sat on the inner side of a
    -- nested loop (row estimates of 1 from the set-returning function) and was recomputed once
    -- per shift: quadratic, 35 min for the sample's 4.3 M fixes instead of seconds.
    INSERT INTO shift_tracks (worker_id, day, shift_start, shift_end, n_fixes, n_spikes, n_jitter,
                              length_m, geom)
    WITH c AS MATERIALIZED (
        SELECT b.*, sum(b.brk) OVER (PARTITION BY b.worker_id ORDER BY b.t) AS shift_no
          FROM (SELECT cf.*, CASE WHEN cf.status = 'start'
                                    OR extract(epoch FROM cf.t - lag(cf.t) OVER w) > p_gap_s
                                  THEN 1 ELSE 0 END AS brk
                  FROM clean_fixes(p_from, p_to, NULL, p_max_speed, p_jitter_k, p_min_step_m) cf
                WINDOW w AS (PARTITION BY cf.worker_id ORDER BY cf.t)) b
    ), lines AS MATERIALIZED (
        SELECT c.worker_id, c.shift_no, c.seg,
               ST_MakeLine(ST_SetSRID(ST_MakePoint(c.x, c.y), 4548) ORDER BY c.t) AS line
          FROM c WHERE c.status IN ('start', 'gap', 'reanchor', 'kept')
         GROUP BY c.worker_id, c.shift_no, c.seg
    ), shift_lines AS MATERIALIZED (
        SELECT worker_id, shift_no,
               ST_Multi(ST_Collect(line ORDER BY seg) FILTER (WHERE ST_NPoints(line) >= 2)) AS geom_4548
          FROM lines GROUP BY worker_id, shift_no
    ), shifts AS MATERIALIZED (
        SELECT worker_id, shift_no, min(t) AS shift_start, max(t) AS shift_end, count(*) AS n_fixes,
               count(*) FILTER (WHERE status = 'spike') AS n_spikes,
               count(*) FILTER (WHERE status = 'jitter') AS n_jitter, sum(step_m) AS length_m
          FROM c GROUP BY worker_id, shift_no
    )
    SELECT s.worker_id, (s.shift_start AT TIME ZONE 'Asia/Shanghai')::date, s.shift_start, s.shift_end,
           s.n_fixes, s.n_spikes, s.n_jitter, s.length_m, ST_Transform(l.geom_4548, 4490)
      FROM shifts s
      JOIN workers w ON w.id = s.worker_id
      LEFT JOIN shift_lines l USING (worker_id, shift_no)
     WHERE s.shift_start >= p_from AND s.shift_start < p_to;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
