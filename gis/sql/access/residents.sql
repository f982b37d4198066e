-- Published (suppressed) residents of buildings, from the public view.
SELECT building_id, total FROM population_by_building WHERE building_id = ANY (:ids)
