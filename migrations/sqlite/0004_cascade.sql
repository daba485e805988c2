-- Cascades: whether the cheap model's answer was kept or escalated, why, and what the
-- discarded cheap attempt used and cost (already included in cost_nanos).
ALTER TABLE usage_events ADD COLUMN cascade TEXT;
ALTER TABLE usage_events ADD COLUMN escalation_reason TEXT;
ALTER TABLE usage_events ADD COLUMN escalated_from TEXT;
ALTER TABLE usage_events ADD COLUMN escalated_deployment TEXT;
ALTER TABLE usage_events ADD COLUMN escalation_prompt_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_events ADD COLUMN escalation_completion_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_events ADD COLUMN escalation_cost_nanos BIGINT NOT NULL DEFAULT 0;
