-- Daily rollups per tag and per cost center, and per route arm, kept in the same transaction as
-- the events: a usage report filtered by a tag or a cost center, and the routing page's
-- per-route statistics, read whole days here and only the partial days at either end from
-- usage_events. An event counts once under each of its distinct tags.
CREATE TABLE usage_daily_facets (
    day_ms               BIGINT NOT NULL,
    facet                TEXT NOT NULL,
    facet_value          TEXT NOT NULL,
    key_id               TEXT NOT NULL,
    team_id              TEXT NOT NULL,
    model                TEXT NOT NULL,
    requests             BIGINT NOT NULL,
    errors               BIGINT NOT NULL,
    prompt_tokens        BIGINT NOT NULL,
    completion_tokens    BIGINT NOT NULL,
    cached_tokens        BIGINT NOT NULL,
    cost_nanos           BIGINT NOT NULL,
    cache_hits           BIGINT NOT NULL,
    saved_nanos          BIGINT NOT NULL,
    baseline_nanos       BIGINT NOT NULL,
    estimated_cost_nanos BIGINT NOT NULL,
    PRIMARY KEY (day_ms, facet, facet_value, key_id, team_id, model)
);
CREATE INDEX usage_daily_facets_value ON usage_daily_facets(facet, facet_value, day_ms);

CREATE TABLE usage_daily_routes (
    day_ms                BIGINT NOT NULL,
    route                 TEXT NOT NULL,
    variant               TEXT NOT NULL,
    model                 TEXT NOT NULL,
    shadow_model          TEXT NOT NULL,
    cascade               TEXT NOT NULL,
    escalation_reason     TEXT NOT NULL,
    requests              BIGINT NOT NULL,
    prompt_tokens         BIGINT NOT NULL,
    cached_tokens         BIGINT NOT NULL,
    completion_tokens     BIGINT NOT NULL,
    cost_nanos            BIGINT NOT NULL,
    escalation_cost_nanos BIGINT NOT NULL,
    PRIMARY KEY (day_ms, route, variant, model, shadow_model, cascade, escalation_reason)
);

INSERT INTO usage_daily_facets (day_ms, facet, facet_value, key_id, team_id, model, requests, errors, prompt_tokens,
                                completion_tokens, cached_tokens, cost_nanos, cache_hits, saved_nanos,
                                baseline_nanos, estimated_cost_nanos)
    SELECT (e.ts_ms - (e.ts_ms % 86400000)), 'cost_center', e.cost_center, COALESCE(e.key_id, ''), COALESCE(e.team_id, ''), e.model,
           COUNT(*), SUM(CASE WHEN e.outcome = 'success' THEN 0 ELSE 1 END), SUM(e.prompt_tokens),
           SUM(e.completion_tokens), SUM(e.cached_tokens), SUM(e.cost_nanos),
           SUM(CASE WHEN e.cache IN ('hit', 'semantic_hit') THEN 1 ELSE 0 END), SUM(e.cache_saved_nanos),
           SUM(e.baseline_cost_nanos), SUM(CASE WHEN e.usage_source = 'estimated' THEN e.cost_nanos ELSE 0 END)
    FROM usage_events e WHERE e.cost_center IS NOT NULL
    GROUP BY (e.ts_ms - (e.ts_ms % 86400000)), e.cost_center, COALESCE(e.key_id, ''), COALESCE(e.team_id, ''), e.model;
INSERT INTO usage_daily_facets (day_ms, facet, facet_value, key_id, team_id, model, requests, errors, prompt_tokens,
                                completion_tokens, cached_tokens, cost_nanos, cache_hits, saved_nanos,
                                baseline_nanos, estimated_cost_nanos)
    SELECT (e.ts_ms - (e.ts_ms % 86400000)), 'tag', t.tag, COALESCE(e.key_id, ''), COALESCE(e.team_id, ''), e.model,
           COUNT(*), SUM(CASE WHEN e.outcome = 'success' THEN 0 ELSE 1 END), SUM(e.prompt_tokens),
           SUM(e.completion_tokens), SUM(e.cached_tokens), SUM(e.cost_nanos),
           SUM(CASE WHEN e.cache IN ('hit', 'semantic_hit') THEN 1 ELSE 0 END), SUM(e.cache_saved_nanos),
           SUM(e.baseline_cost_nanos), SUM(CASE WHEN e.usage_source = 'estimated' THEN e.cost_nanos ELSE 0 END)
    FROM (SELECT DISTINCT x.event_id, j.value AS tag FROM usage_events x, json_each(COALESCE(x.tags, '[]')) j) t JOIN usage_events e ON e.event_id = t.event_id
    GROUP BY (e.ts_ms - (e.ts_ms % 86400000)), t.tag, COALESCE(e.key_id, ''), COALESCE(e.team_id, ''), e.model;
INSERT INTO usage_daily_routes (day_ms, route, variant, model, shadow_model, cascade, escalation_reason, requests,
                                prompt_tokens, cached_tokens, completion_tokens, cost_nanos, escalation_cost_nanos)
    SELECT (e.ts_ms - (e.ts_ms % 86400000)), e.route, COALESCE(e.route_variant, ''), e.model, COALESCE(e.shadow_model, ''),
           COALESCE(e.cascade, ''), COALESCE(e.escalation_reason, ''), COUNT(*), SUM(e.prompt_tokens),
           SUM(e.cached_tokens), SUM(e.completion_tokens), SUM(e.cost_nanos), SUM(e.escalation_cost_nanos)
    FROM usage_events e WHERE e.route IS NOT NULL
    GROUP BY (e.ts_ms - (e.ts_ms % 86400000)), e.route, COALESCE(e.route_variant, ''), e.model, COALESCE(e.shadow_model, ''),
             COALESCE(e.cascade, ''), COALESCE(e.escalation_reason, '');
