-- Migration 0006_privacy: complementary suppression of the public population views.
--
-- Primary suppression (0001_overlays) hides counts below 5. Published totals are sums of their
-- parts, so a hidden count could be recovered by subtraction: a grid cell's total minus its
-- published buildings, a community minus its buildings or its grid cells, a total minus
-- registered (or floating). population_complementary() hides more cells until, in every such
-- relation, either nothing is hidden or at least two items are (and, when the parent is
-- published, the hidden parts sum to 5 or more): no subtraction isolates one hidden count.
-- tests/security/test_api_abuse.py tries every subtraction the published totals allow.

-- Every count in long form: level, id, parents, measure, value (read with the owner's rights
-- through the public views below; onemap_api has no access to schema restricted).
CREATE VIEW restricted.population_cells AS
WITH measures(m) AS (VALUES ('total'), ('registered'), ('floating'), ('age_60_plus'), ('age_80_plus'),
                            ('children_under_14'), ('special_care')),
wide AS (
    SELECT 'building' AS lvl, f.building_id AS id, b.grid_id AS grid, b.community_id AS community, to_jsonb(f) AS j
      FROM restricted.population_by_building_full f JOIN buildings b ON b.id = f.building_id
    UNION ALL
    SELECT 'grid', f.grid_id, NULL, g.community_id, to_jsonb(f)
      FROM restricted.population_by_grid_full f JOIN grid_cells g ON g.id = f.grid_id
    UNION ALL
    SELECT 'community', f.community_id, NULL, NULL, to_jsonb(f)
      FROM restricted.population_by_community_full f
)
SELECT w.lvl, w.id, w.grid, w.community, m.m, (w.j ->> m.m)::integer AS v
  FROM wide w CROSS JOIN measures m;

-- Pure function of its argument (a JSON array of population_cells rows): the hidden
-- (lvl, id, measure). Runs with the caller's rights, reads no table, writes nothing.
CREATE FUNCTION population_complementary(cells jsonb)
RETURNS TABLE (lvl text, id text, measure text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    hidden text[];
    added text[];
    a_rel text[];
    a_pk text[];
    a_ck text[];
    a_cv integer[];
    rounds integer := 0;
BEGIN
    -- relations parent = sum of parts (ck NULL: a part never published, e.g. the people of a
    -- community outside its grid cells), kept in arrays for the rounds below
    WITH c AS (
        SELECT x.lvl, x.id, x.grid, x.community, x.m, coalesce(x.v, 0) AS v,
               x.lvl || E'\x1f' || x.id || E'\x1f' || x.m AS k
          FROM jsonb_to_recordset(cells) AS x(lvl text, id text, grid text, community text, m text, v integer)
    ),
    rel AS (
        SELECT 'g' || p.k AS rel, p.k AS pk, ch.k AS ck, ch.v AS cv FROM c p JOIN c ch
            ON p.lvl = 'grid' AND ch.lvl = 'building' AND ch.grid = p.id AND ch.m = p.m
        UNION ALL
        SELECT 'cb' || p.k, p.k, ch.k, ch.v FROM c p JOIN c ch
            ON p.lvl = 'community' AND ch.lvl = 'building' AND ch.community = p.id AND ch.m = p.m
        UNION ALL
        SELECT 'cg' || p.k, p.k, ch.k, ch.v FROM c p JOIN c ch
            ON p.lvl = 'community' AND ch.lvl = 'grid' AND ch.community = p.id AND ch.m = p.m
        UNION ALL
        SELECT 'cg' || p.k, p.k, NULL, p.v - coalesce(s.v, 0)
          FROM c p LEFT JOIN (SELECT community, m, sum(v)::integer AS v FROM c WHERE lvl = 'grid' GROUP BY 1, 2) s
            ON s.community = p.id AND s.m = p.m
         WHERE p.lvl = 'community' AND p.v <> coalesce(s.v, 0)
           AND EXISTS (SELECT 1 FROM c g WHERE g.lvl = 'grid' AND g.community = p.id)
        UNION ALL
        SELECT 'rf' || p.k, p.k, ch.k, ch.v FROM c p JOIN c ch
            ON ch.lvl = p.lvl AND ch.id = p.id AND p.m = 'total' AND ch.m IN ('registered', 'floating')
    )
    SELECT coalesce(array_agg(rel.rel), '{}'), coalesce(array_agg(rel.pk), '{}'),
           coalesce(array_agg(rel.ck), '{}'), coalesce(array_agg(rel.cv), '{}')
      INTO a_rel, a_pk, a_ck, a_cv FROM rel;

    -- primary: below 5; registered and floating together whenever one of total/registered/floating is
    SELECT coalesce(array_agg(DISTINCT s.k), '{}') INTO hidden FROM (
        SELECT x.lvl || E'\x1f' || x.id || E'\x1f' || x.m AS k
          FROM jsonb_to_recordset(cells) AS x(lvl text, id text, m text, v integer) WHERE coalesce(x.v, 0) < 5
        UNION ALL
        SELECT x.lvl || E'\x1f' || x.id || E'\x1f' || y.m
          FROM jsonb_to_recordset(cells) AS x(lvl text, id text, m text, v integer)
          CROSS JOIN (VALUES ('registered'), ('floating')) y(m)
         WHERE x.m IN ('total', 'registered', 'floating') AND coalesce(x.v, 0) < 5
    ) s;
    LOOP
        rounds := rounds + 1;
        WITH h AS (SELECT DISTINCT unnest(hidden) AS k),
        r AS (
            SELECT u.rel, u.pk, u.ck, u.cv, (hp.k IS NOT NULL) AS p_hidden,
                   (u.ck IS NULL OR hc.k IS NOT NULL) AS c_hidden
              FROM unnest(a_rel, a_pk, a_ck, a_cv) AS u(rel, pk, ck, cv)
              LEFT JOIN h hp ON hp.k = u.pk
              LEFT JOIN h hc ON hc.k = u.ck
        ),
        st AS (
            SELECT r.rel, r.pk, bool_or(r.p_hidden) AS p_hidden,
                   count(*) FILTER (WHERE r.c_hidden) AS n_h,
                   coalesce(sum(r.cv) FILTER (WHERE r.c_hidden), 0) AS s_h
              FROM r GROUP BY r.rel, r.pk
        ),
        bad AS (
            SELECT st.rel, st.pk FROM st
             WHERE (NOT st.p_hidden AND st.n_h > 0 AND (st.n_h < 2 OR st.s_h < 5))  -- parent minus the rest isolates
                OR (st.p_hidden AND st.n_h = 0)                                      -- parent = sum of its parts
        ),
        pick AS (  -- the smallest published part; none left: the parent
            SELECT DISTINCT ON (b.rel) b.rel, coalesce(r.ck, b.pk) AS k
              FROM bad b LEFT JOIN r ON r.rel = b.rel AND NOT r.c_hidden
             ORDER BY b.rel, r.cv NULLS LAST, r.ck
        )
        SELECT array_agg(DISTINCT pick.k) INTO added FROM pick LEFT JOIN h ON h.k = pick.k WHERE h.k IS NULL;
        EXIT WHEN added IS NULL OR rounds > 1000;
        hidden := hidden || added;
    END LOOP;
    RETURN QUERY SELECT split_part(k, E'\x1f', 1), split_part(k, E'\x1f', 2), split_part(k, E'\x1f', 3)
                   FROM unnest(hidden) AS k;
END $$;
