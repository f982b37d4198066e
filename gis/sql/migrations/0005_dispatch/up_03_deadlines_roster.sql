-- Migration 0005_dispatch: priority deadlines, the duty roster, deadline escalation alarms.

-- Priority caps the category's deadline: deadline_at = reported_at + LEAST(category hours,
-- priority minutes). Operators change the minutes (PUT /dispatch/deadlines/{priority},
-- `onemap dispatch deadline`); new events get the new deadline, existing ones keep theirs.
CREATE TABLE priority_deadline (
    priority    text PRIMARY KEY CHECK (priority IN ('A', 'B', 'C', 'D')),
    minutes     integer NOT NULL CHECK (minutes > 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);
INSERT INTO priority_deadline (priority, minutes) VALUES ('A', 240), ('B', 1440), ('C', 4320), ('D', 7200);

-- Fires before events_before_insert (triggers run in name order), only for events that come
-- without a deadline (the API's inserts; the events loader sets its own).
CREATE FUNCTION events_before_deadline() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT NEW.reported_at + LEAST(make_interval(secs => c.deadline_hours * 3600),
                                   make_interval(mins => COALESCE(p.minutes, 2147483647)))
      INTO NEW.deadline_at
      FROM event_category c LEFT JOIN priority_deadline p ON p.priority = NEW.priority
     WHERE c.code = NEW.category;
    RETURN NEW;
END $$;
CREATE TRIGGER events_before_deadline BEFORE INSERT ON events FOR EACH ROW
    WHEN (NEW.deadline_at IS NULL) EXECUTE FUNCTION events_before_deadline();

-- The dispatch queue: open events not yet handled, most urgent priority first, then oldest.
CREATE INDEX events_queue_idx ON events (priority, reported_at)
    WHERE status IN ('reported', 'accepted', 'dispatched', 'en_route', 'on_scene');

-- Who is on duty when: daily local times per worker; rows without worker_id apply to every worker
-- with no row of their own. A shift may cross midnight (ends_local < starts_local). No foreign key
-- to workers: the workers layer is replaced by loads, the roster stays.
CREATE TABLE duty_roster (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    worker_id     text,
    starts_local  time NOT NULL,
    ends_local    time NOT NULL,
    tz            text NOT NULL DEFAULT 'Asia/Shanghai',
    CHECK (starts_local <> ends_local)
);
CREATE INDEX duty_roster_worker_id_idx ON duty_roster (worker_id);
-- the sample's patrols: 08:00-16:00 local every day
INSERT INTO duty_roster (worker_id, starts_local, ends_local) VALUES (NULL, '08:00', '16:00');

CREATE FUNCTION on_duty(p_worker_id text, p_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(bool_or(CASE WHEN r.starts_local < r.ends_local
                                 THEN l.t >= r.starts_local AND l.t < r.ends_local
                                 ELSE l.t >= r.starts_local OR l.t < r.ends_local END), false)
      FROM duty_roster r
      CROSS JOIN LATERAL (SELECT (p_at AT TIME ZONE r.tz)::time AS t) l
     WHERE r.worker_id = p_worker_id
        OR (r.worker_id IS NULL AND NOT EXISTS (SELECT 1 FROM duty_roster o WHERE o.worker_id = p_worker_id))
$$;

-- Escalation alarms: kind 'deadline_missed', one per event (alarms.event_id), NOTIFY'd by the
-- alarms_after_insert trigger like every alarm.
ALTER TABLE alarms ADD COLUMN event_id text;
DO $$
DECLARE
    def text;
    kinds text[];
BEGIN
    SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
     WHERE conrelid = 'alarms'::regclass AND conname = 'alarms_kind_check';
    -- keep whatever kinds other migrations allow, add ours
    SELECT array_agg(DISTINCT m[1] ORDER BY m[1]) INTO kinds
      FROM regexp_matches(COALESCE(def, ''), '''([a-z_]+)''', 'g') AS m;
    kinds := array(SELECT DISTINCT k FROM unnest(COALESCE(kinds, '{}') || ARRAY['deadline_missed']) k ORDER BY k);
    EXECUTE 'ALTER TABLE alarms DROP CONSTRAINT IF EXISTS alarms_kind_check';
    EXECUTE format('ALTER TABLE alarms ADD CONSTRAINT alarms_kind_check CHECK (kind = ANY (%L::text[]))', kinds);
END $$;
-- an episode is also per event (two events with the same deadline are two alarms)
ALTER TABLE alarms DROP CONSTRAINT alarms_episode_uq;
ALTER TABLE alarms ADD CONSTRAINT alarms_episode_uq
    UNIQUE NULLS NOT DISTINCT (kind, worker_id, geofence_id, t_start, event_id);
CREATE UNIQUE INDEX alarms_deadline_event_uq ON alarms (event_id) WHERE kind = 'deadline_missed';

-- Raise one 'deadline_missed' alarm per open, not yet handled event whose deadline passed in
-- (p_now - p_lookback_s, p_now] (older misses are history, not news). Safe to run from several
-- server processes at once. Returns the number of new alarms.
CREATE FUNCTION escalate_missed_deadlines(p_now timestamptz DEFAULT now(),
                                          p_lookback_s double precision DEFAULT 86400)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO alarms (kind, worker_id, t_start, t_end, raised_at, details, geom, event_id)
    SELECT 'deadline_missed', e.worker_id, e.deadline_at, p_now, p_now,
           jsonb_build_object('event_id', e.id, 'priority', e.priority, 'category', e.category,
                              'status', e.status, 'deadline_at', e.deadline_at,
                              'overdue_s', round(extract(epoch FROM p_now - e.deadline_at))),
           e.geom, e.id
      FROM events e
     WHERE e.status IN ('reported', 'accepted', 'dispatched', 'en_route', 'on_scene')
       AND e.deadline_at <= p_now
       AND e.deadline_at > p_now - make_interval(secs => p_lookback_s)
       AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'deadline_missed' AND a.event_id = e.id)
     ORDER BY e.deadline_at, e.id
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
