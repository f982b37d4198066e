-- A batch of fixes as parallel arrays; fixes already stored are skipped (the rows back are the
-- ones stored). The statement trigger updates worker_positions and NOTIFYs positions.
INSERT INTO gps_fixes (device_id, worker_id, t, speed, accuracy, geom)
SELECT d, w, t, s, a, ST_SetSRID(ST_MakePoint(x, y), 4490)
  FROM unnest(CAST(:d AS text[]), CAST(:w AS text[]), CAST(:t AS timestamptz[]),
              CAST(:s AS real[]), CAST(:a AS real[]), CAST(:x AS float8[]), CAST(:y AS float8[]))
       AS u(d, w, t, s, a, x, y)
ON CONFLICT DO NOTHING
RETURNING device_id, t
