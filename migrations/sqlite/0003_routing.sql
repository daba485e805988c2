-- Routing experiments: which policy decided an event (A/B) and what a shadow policy would have
-- chosen instead.
ALTER TABLE usage_events ADD COLUMN route_variant TEXT;
ALTER TABLE usage_events ADD COLUMN shadow_model TEXT;
