-- Event category codes (the table the loaders check deliveries against).
SELECT code FROM event_category ORDER BY code
