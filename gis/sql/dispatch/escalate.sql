SELECT escalate_missed_deadlines(COALESCE(CAST(:now AS timestamptz), now()), :lookback_s)
