-- Migration 0009_civil: care visits to vulnerable households (docs/postgis.md "Care visits").
-- Person-level: the restricted schema only (read as onemap_privileged inside a privileged
-- user's request, every read audited). A household is a pseudonymous id and its building: no
-- names, ID numbers or phone numbers.
CREATE TABLE restricted.care_category (
    code      text PRIMARY KEY,
    label_zh  text NOT NULL,
    default_interval_days integer NOT NULL CHECK (default_interval_days > 0)
);
INSERT INTO restricted.care_category (code, label_zh, default_interval_days) VALUES
    ('dibao', '低保', 30),
    ('tekun', '特困', 14),
    ('gaoling', '高龄', 30),
    ('canji', '残疾', 30),
    ('dujv', '独居', 7),
    ('kunjing_ertong', '困境儿童', 14);

CREATE TABLE restricted.care_households (
    id             text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,40}$'),
    building_id    text NOT NULL REFERENCES buildings (id) ON DELETE CASCADE,
    category       text NOT NULL REFERENCES restricted.care_category (code),
    interval_days  integer NOT NULL CHECK (interval_days BETWEEN 1 AND 366),
    worker_id      text REFERENCES workers (id) ON DELETE SET NULL,
    active         boolean NOT NULL DEFAULT true,
    enrolled_on    date NOT NULL DEFAULT current_date
);
CREATE INDEX care_households_worker_id_idx ON restricted.care_households (worker_id);
CREATE INDEX care_households_building_id_idx ON restricted.care_households (building_id);

CREATE TABLE restricted.care_visits (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    household_id  text NOT NULL REFERENCES restricted.care_households (id) ON DELETE CASCADE,
    worker_id     text REFERENCES workers (id) ON DELETE SET NULL,
    device_id     text,
    visited_at    timestamptz NOT NULL,
    outcome       text NOT NULL DEFAULT 'visited' CHECK (outcome IN ('visited', 'not_home', 'refused')),
    note          text CHECK (length(note) <= 2000),
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX care_visits_household_at_idx ON restricted.care_visits (household_id, visited_at DESC);

-- Last completed visit, due date and days overdue per active household at p_at (restricted).
CREATE VIEW restricted.care_status AS
SELECT h.id AS household_id, h.building_id, b.community_id, h.category, h.interval_days, h.worker_id,
       h.enrolled_on, v.last_visit
  FROM restricted.care_households h
  JOIN buildings b ON b.id = h.building_id
  LEFT JOIN LATERAL (SELECT max(cv.visited_at) AS last_visit FROM restricted.care_visits cv
                      WHERE cv.household_id = h.id AND cv.outcome = 'visited') v ON true
 WHERE h.active;

-- The device role's one write: a visit by p_worker (the API checks the device binding). Unknown
-- or inactive household: an error naming it. Returns the visit id.
CREATE FUNCTION care_visit_record(p_household text, p_worker text, p_device text, p_at timestamptz,
                                  p_outcome text, p_note text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    vid bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM restricted.care_households WHERE id = p_household AND active) THEN
        RAISE EXCEPTION 'unknown care household %', p_household USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO restricted.care_visits (household_id, worker_id, device_id, visited_at, outcome, note)
    VALUES (p_household, p_worker, p_device, p_at, coalesce(p_outcome, 'visited'), p_note)
    RETURNING id INTO vid;
    RETURN vid;
END $$;

-- What planners see: per community and category the households and those overdue at p_at,
-- suppressed like the population views: counts below 5 are NULL; when a community total is
-- published and its hidden parts sum to less than 5 (or one part alone is hidden), the total is
-- hidden too; the district total of a column likewise (rows with community NULL).
CREATE FUNCTION care_by_community(p_at timestamptz)
RETURNS TABLE (community_id text, category text, households integer, overdue integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    RETURN QUERY
    WITH s AS (
        SELECT cs.community_id AS cid, cs.category AS cat,
               (coalesce(cs.last_visit, cs.enrolled_on::timestamptz) + make_interval(days => cs.interval_days) < p_at)
                   AS is_overdue
          FROM restricted.care_status cs
    ),
    cells AS (  -- community x category and the community totals (cat '*')
        SELECT cid, cat, count(*)::integer AS n, count(*) FILTER (WHERE is_overdue)::integer AS o
          FROM s GROUP BY GROUPING SETS ((cid, cat), (cid))
    ),
    c2 AS (SELECT cid, coalesce(cat, '*') AS cat, n, o FROM cells),
    hide AS (
        SELECT c2.*, (n < 5) AS hn, (o < 5) AS ho FROM c2
    ),
    rows_ AS (  -- a community total is hidden too when its hidden parts can be isolated
        SELECT t.cid, t.cat, t.n, t.o,
               t.hn OR (t.cat = '*' AND EXISTS (SELECT 1 FROM hide p WHERE p.cid IS NOT DISTINCT FROM t.cid
                                                   AND p.cat <> '*' AND p.hn)
                        AND ((SELECT count(*) FROM hide p WHERE p.cid IS NOT DISTINCT FROM t.cid AND p.cat <> '*' AND p.hn) = 1
                             OR (SELECT sum(p.n) FROM hide p WHERE p.cid IS NOT DISTINCT FROM t.cid AND p.cat <> '*' AND p.hn) < 5))
                   AS hn,
               t.ho OR (t.cat = '*' AND EXISTS (SELECT 1 FROM hide p WHERE p.cid IS NOT DISTINCT FROM t.cid
                                                   AND p.cat <> '*' AND p.ho)
                        AND ((SELECT count(*) FROM hide p WHERE p.cid IS NOT DISTINCT FROM t.cid AND p.cat <> '*' AND p.ho) = 1
                             OR (SELECT sum(p.o) FROM hide p WHERE p.cid IS NOT DISTINCT FROM t.cid AND p.cat <> '*' AND p.ho) < 5))
                   AS ho
          FROM hide t
    ),
    district AS (  -- the district total, hidden when the hidden community totals could be isolated
        SELECT NULL::text AS cid, '*'::text AS cat, sum(r.n)::integer AS n, sum(r.o)::integer AS o,
               (sum(r.n) < 5 OR count(*) FILTER (WHERE r.hn) = 1 OR
                coalesce(sum(r.n) FILTER (WHERE r.hn), 5) < 5) AS hn,
               (sum(r.o) < 5 OR count(*) FILTER (WHERE r.ho) = 1 OR
                coalesce(sum(r.o) FILTER (WHERE r.ho), 5) < 5) AS ho
          FROM rows_ r WHERE r.cat = '*'
    )
    SELECT x.cid, x.cat, CASE WHEN x.hn THEN NULL ELSE x.n END, CASE WHEN x.ho THEN NULL ELSE x.o END
      FROM (SELECT * FROM rows_ UNION ALL SELECT * FROM district WHERE n IS NOT NULL) x
     ORDER BY x.cid NULLS LAST, x.cat;
END $$;
