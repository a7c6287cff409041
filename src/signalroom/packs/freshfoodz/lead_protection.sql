-- FreshFoodz lead protection "6 months + 60 days + 10 days with stop-clock" (seed 002).
--
-- The same definition as lead_protection.py (see the pack README for every assumption).
-- Fixes to the seed's sketch:
--   * the sketch joins USING (lead_id, user_id) but leads has "id": join holds on the lead only
--     (a hold belongs to the lead, whoever placed it);
--   * it reads the alias protection_expires_at in the same SELECT's CASE: not valid SQL;
--   * overlapping holds were counted twice: windows are merged (gaps and islands);
--   * holds were not clipped: only the part between created_at and the evaluation instant
--     counts, and a hold starting after the lead expired does not revive it;
--   * "+ interval '6 months'" on timestamptz depends on the session TimeZone and day intervals
--     shift by an hour across DST: the calendar part is done on the Europe/Berlin wall clock,
--     the hold part as elapsed microseconds;
--   * only PROTECTED/EXPIRED existed: the reminder and grace phases and releases are added;
--   * now() is fixed per transaction and untestable: the function takes the instant, the view
--     passes now().
-- Idempotent: safe to run again on every start.

CREATE TABLE IF NOT EXISTS leads (
    id          text PRIMARY KEY,
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL,
    released_at timestamptz
);

CREATE TABLE IF NOT EXISTS lead_holds (
    id       bigserial PRIMARY KEY,
    lead_id  text NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    start_at timestamptz NOT NULL,
    end_at   timestamptz,
    CONSTRAINT lead_holds_end_after_start CHECK (end_at IS NULL OR end_at >= start_at)
);

CREATE INDEX IF NOT EXISTS lead_holds_lead_start ON lead_holds (lead_id, start_at);

CREATE OR REPLACE FUNCTION freshfoodz_lead_protection(p_at timestamptz)
RETURNS TABLE (
    lead_id       text,
    user_id       text,
    created_at    timestamptz,
    state         text,
    hold_us       bigint,
    reminder_at   timestamptz,
    grace_at      timestamptz,
    expires_at    timestamptz,
    reminders_due integer
)
LANGUAGE sql STABLE AS $fn$
WITH base AS (
    SELECT
        l.id AS lid, l.user_id AS uid, l.created_at AS created, l.released_at AS released,
        ((l.created_at AT TIME ZONE 'Europe/Berlin') + interval '6 months')
            AT TIME ZONE 'Europe/Berlin' AS reminder_base,
        ((l.created_at AT TIME ZONE 'Europe/Berlin') + interval '6 months' + interval '60 days')
            AT TIME ZONE 'Europe/Berlin' AS grace_base,
        ((l.created_at AT TIME ZONE 'Europe/Berlin') + interval '6 months' + interval '70 days')
            AT TIME ZONE 'Europe/Berlin' AS expiry_base
    FROM leads l
),
clipped AS (
    SELECT b.lid, b.expiry_base,
           GREATEST(h.start_at, b.created) AS s,
           LEAST(COALESCE(h.end_at, p_at), p_at) AS e
    FROM lead_holds h JOIN base b ON b.lid = h.lead_id
),
marked AS (
    SELECT c.*,
           CASE WHEN c.s <= MAX(c.e) OVER (PARTITION BY c.lid ORDER BY c.s, c.e
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                THEN 0 ELSE 1 END AS starts_island
    FROM clipped c
    WHERE c.s < c.e
),
islands AS (
    SELECT m.*, SUM(m.starts_island) OVER (PARTITION BY m.lid ORDER BY m.s, m.e
                                          ROWS UNBOUNDED PRECEDING) AS island
    FROM marked m
),
merged AS (
    SELECT i.lid, MIN(i.expiry_base) AS expiry_base, MIN(i.s) AS s,
           ((EXTRACT(EPOCH FROM MAX(i.e)) - EXTRACT(EPOCH FROM MIN(i.s))) * 1000000)::bigint AS dur_us
    FROM islands i
    GROUP BY i.lid, i.island
),
prefixed AS (
    SELECT m.*,
           COALESCE(SUM(m.dur_us) OVER (PARTITION BY m.lid ORDER BY m.s
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
               AS before_us
    FROM merged m
),
checked AS (
    -- a window counts while every window so far started before the (extended) expiry
    SELECT p.lid, p.dur_us,
           bool_and(p.s < p.expiry_base + (p.before_us::float8 * interval '1 microsecond'))
               OVER (PARTITION BY p.lid ORDER BY p.s ROWS UNBOUNDED PRECEDING) AS counted
    FROM prefixed p
),
held AS (
    SELECT c.lid, SUM(c.dur_us) FILTER (WHERE c.counted)::bigint AS hold_us
    FROM checked c
    GROUP BY c.lid
),
deadlines AS (
    SELECT b.lid, b.uid, b.created, b.released,
           COALESCE(h.hold_us, 0) AS hold_us,
           b.reminder_base + (COALESCE(h.hold_us, 0)::float8 * interval '1 microsecond') AS r_at,
           b.grace_base + (COALESCE(h.hold_us, 0)::float8 * interval '1 microsecond') AS g_at,
           b.expiry_base + (COALESCE(h.hold_us, 0)::float8 * interval '1 microsecond') AS x_at
    FROM base b LEFT JOIN held h ON h.lid = b.lid
)
SELECT
    d.lid, d.uid, d.created,
    CASE
        WHEN d.released IS NOT NULL AND d.released <= p_at THEN 'released'
        WHEN p_at < d.r_at THEN 'protected'
        WHEN p_at < d.g_at THEN 'reminder_due'
        WHEN p_at < d.x_at THEN 'grace'
        ELSE 'expired'
    END,
    d.hold_us, d.r_at, d.g_at, d.x_at,
    (d.r_at <= LEAST(p_at, COALESCE(d.released, p_at)))::int
      + (d.g_at <= LEAST(p_at, COALESCE(d.released, p_at)))::int
      + (d.x_at - interval '24 hours' <= LEAST(p_at, COALESCE(d.released, p_at)))::int
FROM deadlines d
$fn$;

CREATE OR REPLACE VIEW v_lead_protection AS
SELECT * FROM freshfoodz_lead_protection(now());

CREATE OR REPLACE VIEW v_lead_protection_state_counts AS
SELECT s.state, COUNT(p.lead_id)::bigint AS leads
FROM (VALUES ('protected'), ('reminder_due'), ('grace'), ('expired'), ('released')) AS s (state)
LEFT JOIN v_lead_protection p ON p.state = s.state
GROUP BY s.state;
