-- A batch of fixes as parallel arrays; fixes already stored are skipped (the rows back are the
-- ones stored). The statement triggers update worker_positions, NOTIFY positions and raise live
-- alarms (migration 0004_live_ops).
INSERT INTO gps_fixes (device_id, worker_id, t, speed, accuracy, sos, geom)
SELECT d, w, t, s, a, coalesce(sos, false), ST_SetSRID(ST_MakePoint(x, y), 4490)
  FROM unnest(CAST(:d AS text[]), CAST(:w AS text[]), CAST(:t AS timestamptz[]),
              CAST(:s AS real[]), CAST(:a AS real[]), CAST(:x AS float8[]), CAST(:y AS float8[]),
              CAST(:sos AS boolean[]))
       AS u(d, w, t, s, a, x, y, sos)
ON CONFLICT DO NOTHING
RETURNING device_id, t
