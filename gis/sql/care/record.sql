-- A care visit (device role): care_visit_record() checks the household; returns the visit id.
SELECT care_visit_record(:household, :worker, :device, :at, :outcome, :note) AS id
