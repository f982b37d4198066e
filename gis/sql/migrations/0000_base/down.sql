-- Migration 0000_base: downgrade.
DROP SCHEMA IF EXISTS restricted CASCADE;
