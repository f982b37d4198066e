-- Migration 0010_population_hidden: the complementary suppression (population_complementary(),
-- migration 0006) computed once per data change instead of on every query of a public view.
--
-- restricted.population_hidden holds what population_complementary() hides; the loaders that
-- change persons, buildings, grid cells or communities call population_hidden_refresh() in their
-- transaction. restricted.population_hidden_state says whether the stored set is current: the
-- statement triggers below mark it stale on any other change of those tables, and ages count
-- against population_ref_year(), so a stored set of another year is stale too. A stale set is
-- never used: restricted.population_hidden_now then computes the suppression per query as
-- migration 0006 did (slow, never wrong) until the next refresh.

CREATE TABLE restricted.population_hidden (
    lvl     text NOT NULL CHECK (lvl IN ('building', 'grid', 'community')),
    id      text NOT NULL,
    measure text NOT NULL,
    PRIMARY KEY (lvl, id, measure)
);

CREATE TABLE restricted.population_hidden_state (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    ref_year     integer,               -- population_ref_year() of the stored set
    stale        boolean NOT NULL DEFAULT true,
    refreshed_at timestamptz
);
INSERT INTO restricted.population_hidden_state (id) VALUES (true);

-- The hidden (lvl, id, measure): the stored set when current, else computed now.
CREATE VIEW restricted.population_hidden_now AS
SELECT h.lvl, h.id, h.measure
  FROM restricted.population_hidden h
 WHERE (SELECT NOT s.stale AND s.ref_year = population_ref_year() FROM restricted.population_hidden_state s)
UNION ALL
SELECT c.lvl, c.id, c.measure
  FROM population_complementary((SELECT jsonb_agg(to_jsonb(x)) FROM restricted.population_cells x)) c
 WHERE NOT coalesce((SELECT NOT s.stale AND s.ref_year = population_ref_year()
                       FROM restricted.population_hidden_state s), false);

-- Recompute the stored set (one statement each: DELETE, INSERT; the caller's transaction).
-- Returns the number of hidden counts.
CREATE FUNCTION population_hidden_refresh() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    -- one refresh at a time (the row lock is held to the end of the caller's transaction)
    PERFORM 1 FROM restricted.population_hidden_state WHERE id FOR UPDATE;
    DELETE FROM restricted.population_hidden;
    INSERT INTO restricted.population_hidden (lvl, id, measure)
    SELECT DISTINCT c.lvl, c.id, c.measure
      FROM population_complementary((SELECT jsonb_agg(to_jsonb(x)) FROM restricted.population_cells x)) c;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE restricted.population_hidden_state
       SET ref_year = population_ref_year(), stale = false, refreshed_at = now();
    RETURN n;
END $$;

-- Statement trigger: a change the stored set does not reflect (until the next refresh).
CREATE FUNCTION population_hidden_mark_stale() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE restricted.population_hidden_state SET stale = true WHERE NOT stale;
    RETURN NULL;
END $$;

CREATE TRIGGER persons_population_hidden_stale
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON restricted.persons
    FOR EACH STATEMENT EXECUTE FUNCTION population_hidden_mark_stale();
CREATE TRIGGER buildings_population_hidden_stale
    AFTER INSERT OR UPDATE OF id, grid_id, community_id OR DELETE OR TRUNCATE ON buildings
    FOR EACH STATEMENT EXECUTE FUNCTION population_hidden_mark_stale();
CREATE TRIGGER grid_cells_population_hidden_stale
    AFTER INSERT OR UPDATE OF id, community_id OR DELETE OR TRUNCATE ON grid_cells
    FOR EACH STATEMENT EXECUTE FUNCTION population_hidden_mark_stale();
CREATE TRIGGER communities_population_hidden_stale
    AFTER INSERT OR UPDATE OF id OR DELETE OR TRUNCATE ON communities
    FOR EACH STATEMENT EXECUTE FUNCTION population_hidden_mark_stale();
