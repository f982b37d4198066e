-- Migration 0010_population_hidden: grants, then the first refresh.
-- The refresh and the trigger function run with the owner's rights: not for PUBLIC, not for
-- onemap_api (the loaders call the refresh as the owner).
REVOKE EXECUTE ON FUNCTION population_hidden_refresh(), population_hidden_mark_stale() FROM PUBLIC;
GRANT SELECT ON restricted.population_hidden, restricted.population_hidden_state,
    restricted.population_hidden_now TO onemap_privileged;

SELECT population_hidden_refresh();
