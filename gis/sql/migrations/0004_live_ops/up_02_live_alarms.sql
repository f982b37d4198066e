-- Migration 0004_live_ops: live alarms, evaluated as fixes arrive (see docs/postgis.md "Live alarms").
-- A statement trigger on gps_fixes walks the inserted fixes per worker in time order through a
-- small state machine kept in alarm_live_state (one row per worker, locked FOR UPDATE). Alarms,
-- state and fixes commit in the same transaction: a server restart between two batches loses
-- nothing and raises nothing twice (the state says which episode already has its alarm).
-- Quiet sessions (bulk loads, onemap.quiet = on) are skipped: derive_all() raises their alarms.
-- Fixes older than the worker's last evaluated fix (late uploads) are stored but not evaluated.
ALTER TABLE alarms DROP CONSTRAINT alarms_kind_check;
ALTER TABLE alarms ADD CONSTRAINT alarms_kind_check
    CHECK (kind IN ('left_patrol_area', 'no_parking_dwell', 'speeding', 'stationary', 'sos'));

-- The thresholds, one row; operators may change them (UPDATE alarm_rules SET ...).
CREATE TABLE alarm_rules (
    id                   boolean PRIMARY KEY DEFAULT true CHECK (id),
    min_outside_s        double precision NOT NULL DEFAULT 60 CHECK (min_outside_s >= 0),
    tolerance_m          double precision NOT NULL DEFAULT 10 CHECK (tolerance_m >= 0),
    max_gap_s            double precision NOT NULL DEFAULT 300 CHECK (max_gap_s > 0),
    default_dwell_min    double precision NOT NULL DEFAULT 15 CHECK (default_dwell_min > 0),
    dwell_kinds          text[] NOT NULL DEFAULT '{vehicle}',
    speed_limit_ms       jsonb NOT NULL DEFAULT '{"grid_worker": 8.0, "vehicle": 13.9}',
    speed_min_s          double precision NOT NULL DEFAULT 10 CHECK (speed_min_s >= 0),
    stationary_kinds     text[] NOT NULL DEFAULT '{grid_worker}',
    stationary_min       double precision NOT NULL DEFAULT 30 CHECK (stationary_min > 0),
    stationary_radius_m  double precision NOT NULL DEFAULT 10 CHECK (stationary_radius_m > 0)
);
INSERT INTO alarm_rules DEFAULT VALUES;

-- Per worker: the last evaluated fix and the open episode of each alarm kind (its start, first
-- position and the alarm already raised for it, if any).
CREATE TABLE alarm_live_state (
    worker_id    text PRIMARY KEY REFERENCES workers (id) ON DELETE CASCADE,
    last_t       timestamptz NOT NULL,
    last_x       double precision,  -- EPSG:4548
    last_y       double precision,
    out_since    timestamptz,
    out_geom     geometry(Point, 4490),
    out_alarm    bigint,
    zone_id      text,
    zone_since   timestamptz,
    zone_geom    geometry(Point, 4490),
    zone_alarm   bigint,
    fast_since   timestamptz,
    fast_geom    geometry(Point, 4490),
    fast_max     double precision,
    fast_alarm   bigint,
    still_since  timestamptz,
    still_x      double precision,  -- EPSG:4548
    still_y      double precision,
    still_geom   geometry(Point, 4490),
    still_alarm  bigint,
    sos_alarm    bigint
);

-- One alarm for an episode (the episode key is alarms_episode_uq): inserted (NOTIFY by
-- alarms_after_insert) or, when it exists already (the batch derive raised it), extended.
CREATE FUNCTION live_alarm_raise(p_kind text, p_worker text, p_device text, p_geofence text,
                                 p_t_start timestamptz, p_t_end timestamptz, p_raised timestamptz,
                                 p_geom geometry, p_details jsonb)
RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO alarms AS a (kind, worker_id, device_id, geofence_id, t_start, t_end, raised_at, details, geom)
    VALUES (p_kind, p_worker, p_device, p_geofence, p_t_start, p_t_end, p_raised,
            p_details || jsonb_build_object('live', true), p_geom)
    ON CONFLICT ON CONSTRAINT alarms_episode_uq
    DO UPDATE SET t_end = greatest(a.t_end, EXCLUDED.t_end)
    RETURNING a.id
$$;

CREATE FUNCTION live_alarms_after_insert() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    r alarm_rules;
    f record;
    s alarm_live_state;
    gap boolean;
    area geometry;
    area_id text;
    zone text;
    zone_dwell double precision;
    lim double precision;
    spd double precision;
    dt double precision;
BEGIN
    IF coalesce(current_setting('onemap.quiet', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO r FROM alarm_rules;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    FOR f IN SELECT n.worker_id, n.device_id, n.t, n.speed, n.sos, n.geom, n.geom_4548 AS xy,
                    ST_X(n.geom_4548) AS x, ST_Y(n.geom_4548) AS y, w.kind
               FROM new_fixes n JOIN workers w ON w.id = n.worker_id
              ORDER BY n.worker_id, n.t
    LOOP
        INSERT INTO alarm_live_state (worker_id, last_t) VALUES (f.worker_id, '-infinity')
        ON CONFLICT (worker_id) DO NOTHING;
        SELECT * INTO s FROM alarm_live_state WHERE worker_id = f.worker_id FOR UPDATE;
        IF f.t <= s.last_t THEN
            CONTINUE;  -- late fix: stored, left to the batch derive
        END IF;
        gap := s.last_x IS NULL OR extract(epoch FROM f.t - s.last_t) > r.max_gap_s;

        -- SOS button: one alarm per press (a fix flagged sos after a fix without it)
        IF f.sos THEN
            IF s.sos_alarm IS NULL THEN
                s.sos_alarm := live_alarm_raise('sos', f.worker_id, f.device_id, NULL, f.t, f.t, f.t,
                                                f.geom, '{}'::jsonb);
            ELSE
                UPDATE alarms SET t_end = f.t WHERE id = s.sos_alarm AND t_end < f.t;
            END IF;
        ELSE
            s.sos_alarm := NULL;
        END IF;

        -- left its patrol area: farther than tolerance_m from all of them for >= min_outside_s
        SELECT min(g.id), ST_Union(g.geom_4548) INTO area_id, area
          FROM geofences g WHERE g.kind = 'patrol_area' AND g.worker_id = f.worker_id;
        IF area IS NOT NULL AND NOT ST_DWithin(area, f.xy, r.tolerance_m) THEN
            IF s.out_since IS NULL OR gap THEN
                s.out_since := f.t; s.out_geom := f.geom; s.out_alarm := NULL;
            END IF;
            IF s.out_alarm IS NULL THEN
                IF extract(epoch FROM f.t - s.out_since) >= r.min_outside_s THEN
                    s.out_alarm := live_alarm_raise('left_patrol_area', f.worker_id, f.device_id, area_id,
                        s.out_since, f.t, s.out_since + make_interval(secs => r.min_outside_s), s.out_geom,
                        jsonb_build_object('min_outside_s', r.min_outside_s));
                END IF;
            ELSE
                UPDATE alarms SET t_end = f.t WHERE id = s.out_alarm AND t_end < f.t;
            END IF;
        ELSE
            s.out_since := NULL; s.out_geom := NULL; s.out_alarm := NULL;
        END IF;

        -- dwell in a no-parking zone (kinds in dwell_kinds) for >= its max_dwell_min
        zone := NULL;
        IF f.kind = ANY (r.dwell_kinds) THEN
            SELECT g.id, coalesce(g.max_dwell_min, r.default_dwell_min) INTO zone, zone_dwell
              FROM geofences g
             WHERE g.kind = 'no_parking' AND ST_Intersects(g.geom_4548, f.xy)
             ORDER BY g.id LIMIT 1;
        END IF;
        IF zone IS NOT NULL THEN
            IF gap OR s.zone_id IS DISTINCT FROM zone THEN
                s.zone_id := zone; s.zone_since := f.t; s.zone_geom := f.geom; s.zone_alarm := NULL;
            END IF;
            IF s.zone_alarm IS NULL THEN
                IF extract(epoch FROM f.t - s.zone_since) >= zone_dwell * 60 THEN
                    s.zone_alarm := live_alarm_raise('no_parking_dwell', f.worker_id, f.device_id, zone,
                        s.zone_since, f.t, s.zone_since + make_interval(secs => zone_dwell * 60), s.zone_geom,
                        jsonb_build_object('max_dwell_min', zone_dwell));
                END IF;
            ELSE
                UPDATE alarms SET t_end = f.t WHERE id = s.zone_alarm AND t_end < f.t;
            END IF;
        ELSE
            s.zone_id := NULL; s.zone_since := NULL; s.zone_geom := NULL; s.zone_alarm := NULL;
        END IF;

        -- speeding: reported speed (else implied by the previous fix) above the kind's limit
        -- for >= speed_min_s
        lim := (r.speed_limit_ms ->> f.kind)::double precision;
        spd := f.speed;
        IF spd IS NULL AND NOT gap THEN
            dt := extract(epoch FROM f.t - s.last_t);
            IF dt > 0 THEN
                spd := sqrt((f.x - s.last_x) ^ 2 + (f.y - s.last_y) ^ 2) / dt;
            END IF;
        END IF;
        IF lim IS NOT NULL AND spd IS NOT NULL AND spd > lim THEN
            IF s.fast_since IS NULL OR gap THEN
                s.fast_since := f.t; s.fast_geom := f.geom; s.fast_alarm := NULL; s.fast_max := spd;
            END IF;
            s.fast_max := greatest(s.fast_max, spd);
            IF s.fast_alarm IS NULL THEN
                IF extract(epoch FROM f.t - s.fast_since) >= r.speed_min_s THEN
                    s.fast_alarm := live_alarm_raise('speeding', f.worker_id, f.device_id, NULL, s.fast_since,
                        f.t, s.fast_since + make_interval(secs => r.speed_min_s), s.fast_geom,
                        jsonb_build_object('limit_ms', lim, 'max_speed_ms', round(s.fast_max::numeric, 2)));
                END IF;
            ELSE
                UPDATE alarms SET t_end = f.t,
                                  details = details || jsonb_build_object('max_speed_ms', round(s.fast_max::numeric, 2))
                 WHERE id = s.fast_alarm AND t_end < f.t;
            END IF;
        ELSE
            s.fast_since := NULL; s.fast_geom := NULL; s.fast_max := NULL; s.fast_alarm := NULL;
        END IF;

        -- stationary (man down): kinds in stationary_kinds within stationary_radius_m of one
        -- spot for >= stationary_min while still reporting
        IF f.kind = ANY (r.stationary_kinds) THEN
            IF s.still_since IS NULL OR gap OR sqrt((f.x - s.still_x) ^ 2 + (f.y - s.still_y) ^ 2) > r.stationary_radius_m THEN
                s.still_since := f.t; s.still_x := f.x; s.still_y := f.y; s.still_geom := f.geom; s.still_alarm := NULL;
            ELSIF s.still_alarm IS NULL THEN
                IF extract(epoch FROM f.t - s.still_since) >= r.stationary_min * 60 THEN
                    s.still_alarm := live_alarm_raise('stationary', f.worker_id, f.device_id, NULL,
                        s.still_since, f.t, s.still_since + make_interval(secs => r.stationary_min * 60),
                        s.still_geom, jsonb_build_object('stationary_min', r.stationary_min,
                                                         'radius_m', r.stationary_radius_m));
                END IF;
            ELSE
                UPDATE alarms SET t_end = f.t WHERE id = s.still_alarm AND t_end < f.t;
            END IF;
        END IF;

        UPDATE alarm_live_state SET
            last_t = f.t, last_x = f.x, last_y = f.y,
            out_since = s.out_since, out_geom = s.out_geom, out_alarm = s.out_alarm,
            zone_id = s.zone_id, zone_since = s.zone_since, zone_geom = s.zone_geom, zone_alarm = s.zone_alarm,
            fast_since = s.fast_since, fast_geom = s.fast_geom, fast_max = s.fast_max, fast_alarm = s.fast_alarm,
            still_since = s.still_since, still_x = s.still_x, still_y = s.still_y, still_geom = s.still_geom,
            still_alarm = s.still_alarm, sos_alarm = s.sos_alarm
         WHERE worker_id = f.worker_id;
    END LOOP;
    RETURN NULL;
END $$;

-- SOS: devices may flag a fix (POST /gps/fixes "sos": true).
-- nullable: ensure_gps_partitions copies rows through a LIKE table (no defaults copied)
ALTER TABLE gps_fixes ADD COLUMN sos boolean DEFAULT false;

CREATE TRIGGER gps_fixes_live_alarms AFTER INSERT ON gps_fixes
    REFERENCING NEW TABLE AS new_fixes FOR EACH STATEMENT EXECUTE FUNCTION live_alarms_after_insert();
