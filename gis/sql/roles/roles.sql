-- onemap's database roles: run once per database by a superuser (the embedded cluster does it on
-- every `onemap db up`; for an external PostgreSQL `onemap db roles` prints or applies it).
-- Plain psql works too:
--   psql -v owner_password=... -v api_password=... -v database=onemap -f gis/sql/roles/roles.sql
-- Idempotent: roles are created when missing and their attributes and passwords (re)set.
--
--   onemap_owner       LOGIN; owns the database, its schemas and every table (migrations, loaders,
--                      `onemap users`, `onemap db psql`). Not superuser, cannot create roles.
--   onemap_api         LOGIN NOINHERIT; what `onemap serve` connects as. Table grants are given
--                      to it directly by migration 0003; it holds onemap_privileged only through
--                      SET ROLE (NOINHERIT), so the `restricted` schema is closed to it otherwise.
--   onemap_privileged  NOLOGIN; person-level reads (`restricted`), assumed with SET LOCAL ROLE
--                      inside a privileged user's request.
--   onemap_reader, onemap_writer, onemap_admin: NOLOGIN grant bundles of migration 0001, for people.
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['onemap_reader', 'onemap_writer', 'onemap_privileged', 'onemap_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_owner') THEN
        CREATE ROLE onemap_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'onemap_api') THEN
        CREATE ROLE onemap_api LOGIN NOINHERIT;
    END IF;
END $$;

ALTER ROLE onemap_owner LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'owner_password';
ALTER ROLE onemap_api LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'api_password';
ALTER ROLE onemap_privileged NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;

-- The owner may grant the bundles (migration 0001 does) and assume onemap_privileged.
GRANT onemap_reader, onemap_writer, onemap_privileged, onemap_admin TO onemap_owner WITH ADMIN OPTION;
-- onemap_api holds onemap_privileged but, being NOINHERIT, only after SET ROLE.
GRANT onemap_privileged TO onemap_api;

-- The database: owned by onemap_owner; only onemap's roles may connect; no temporary tables for the API.
ALTER DATABASE :"database" OWNER TO onemap_owner;
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"database" TO onemap_owner;
GRANT CONNECT ON DATABASE :"database" TO onemap_api, onemap_reader;

-- PostGIS is not a trusted extension: created here, by the superuser.
CREATE EXTENSION IF NOT EXISTS postgis;
-- Neither is pgRouting (road-network dispatch, migration 0004_dispatch; Debian postgresql-15-pgrouting).
CREATE EXTENSION IF NOT EXISTS pgrouting;
CREATE SCHEMA IF NOT EXISTS restricted AUTHORIZATION onemap_owner;
REVOKE ALL ON SCHEMA restricted FROM PUBLIC;

-- Databases migrated by earlier versions (as the superuser): hand every onemap object to onemap_owner.
DO $$
DECLARE
    obj record;
BEGIN
    EXECUTE 'ALTER SCHEMA public OWNER TO onemap_owner';
    EXECUTE 'ALTER SCHEMA restricted OWNER TO onemap_owner';
    FOR obj IN
        SELECT c.oid, n.nspname, c.relname, c.relkind
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'restricted')
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
           AND c.relowner <> 'onemap_owner'::regrole
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
           -- identity/serial sequences follow their table
           AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %I.%I OWNER TO onemap_owner',
                       CASE obj.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                        WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                        ELSE 'TABLE' END,
                       obj.nspname, obj.relname);
    END LOOP;
    FOR obj IN
        SELECT p.oid::regprocedure AS sig, p.prokind
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname IN ('public', 'restricted')
           AND p.proowner <> 'onemap_owner'::regrole
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO onemap_owner',
                       CASE obj.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                       obj.sig);
    END LOOP;
END $$;
