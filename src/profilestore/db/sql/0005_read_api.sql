-- One CSV cell of a property value (profile export, query/export.py): strings as their text, lists and objects
-- as JSON text, both always quoted (RFC 4180: quotes doubled); numbers and booleans as JSON writes them; null
-- and missing as an empty cell.  One SQL expression, so the planner inlines it: a call costs a few jsonb
-- operations, not a function call per cell.  Postgres writes the lines, so Python never decodes a profile.
CREATE OR REPLACE FUNCTION profilestore_csv_cell(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE jsonb_typeof(v)
      WHEN 'string' THEN '"' || replace(v #>> '{}', '"', '""') || '"'
      WHEN 'number' THEN v::text
      WHEN 'boolean' THEN v::text
      WHEN 'null' THEN ''
      WHEN 'array' THEN '"' || replace(v::text, '"', '""') || '"'
      WHEN 'object' THEN '"' || replace(v::text, '"', '""') || '"'
      ELSE '' END
$$;
