-- Big-screen KPIs at :now; "today" is the local (Asia/Shanghai) day [:day_start, :day_end).
SELECT
    (SELECT COALESCE(jsonb_object_agg(status, n), '{}'::jsonb)
       FROM (SELECT status, count(*) AS n FROM events
              WHERE reported_at >= :day_start AND reported_at < :day_end GROUP BY status) s) AS events_today,
    (SELECT count(*) FROM events
      WHERE status NOT IN ('closed', 'rejected') AND deadline_at < :now) AS overdue,
    (SELECT count(*) FROM events WHERE status NOT IN ('closed', 'rejected')) AS open,
    (SELECT count(*) FROM worker_positions wp JOIN workers w ON w.id = wp.worker_id
      WHERE w.active AND wp.t > CAST(:now AS timestamptz) - make_interval(secs => :on_duty_s)
        AND wp.t <= :now) AS patrollers_on_duty,
    (SELECT count(*) FROM workers WHERE active) AS patrollers_total,
    (SELECT count(*) FROM cameras WHERE status = 'online') AS cameras_online,
    (SELECT count(*) FROM cameras) AS cameras_total,
    (SELECT count(*) FROM alarms WHERE raised_at >= :day_start AND raised_at < :day_end) AS alarms_today
