-- Facilities per kind (every kind listed).
SELECT k.kind, count(f.id) FROM facility_kind k LEFT JOIN facilities f ON f.kind = k.kind GROUP BY 1 ORDER BY 1
