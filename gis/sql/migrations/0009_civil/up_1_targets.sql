-- Migration 0009_civil: what community targets are measured on (issue 16, docs/postgis.md
-- "Community targets"): security-incident categories, category groups and satisfaction surveys.

-- Security incidents the civil-affairs targets count (seed 004: burglary, theft, disputes,
-- family conflicts); 'dispute' exists since 0001_overlays.
INSERT INTO event_category (code, label_zh, deadline_hours) VALUES
    ('burglary', '入室盗窃', 24),
    ('theft', '盗窃', 24),
    ('family_conflict', '家庭矛盾', 48)
ON CONFLICT (code) DO NOTHING;

-- Category groups a target may count ("group: security" in a targets file). A category may be in
-- several groups.
CREATE TABLE event_category_group (
    group_code  text NOT NULL CHECK (group_code <> ''),
    category    text NOT NULL REFERENCES event_category (code) ON DELETE CASCADE,
    PRIMARY KEY (group_code, category)
);
INSERT INTO event_category_group (group_code, category) VALUES
    ('security', 'burglary'), ('security', 'theft'), ('security', 'dispute'),
    ('security', 'family_conflict'),
    ('environment', 'city_appearance'), ('environment', 'sanitation'), ('environment', 'greening'),
    ('order', 'street_order'), ('order', 'illegal_construction'),
    ('facilities', 'municipal_facilities'), ('facilities', 'safety_hazard');

-- Resident satisfaction surveys: one row per community, period (first day of the surveyed
-- month or quarter, local date) and topic; `onemap load surveys`.
CREATE TABLE surveys (
    community_id  text NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    period        date NOT NULL,
    topic         text NOT NULL DEFAULT 'overall' CHECK (topic <> ''),
    respondents   integer NOT NULL CHECK (respondents > 0),
    satisfied     integer NOT NULL CHECK (satisfied >= 0),
    CHECK (satisfied <= respondents),
    PRIMARY KEY (community_id, period, topic)
);
CREATE INDEX surveys_period_idx ON surveys (period);
