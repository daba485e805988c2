-- A key's default routing preference (cost, quality or balanced) when a request sends no
-- x-switchyard-prefer header.
ALTER TABLE api_keys ADD COLUMN route_prefer TEXT;
