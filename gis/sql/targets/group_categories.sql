-- The categories of an event category group.
SELECT category FROM event_category_group WHERE group_code = :group ORDER BY category
