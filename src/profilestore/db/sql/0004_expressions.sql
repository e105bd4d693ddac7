-- The expression language's helpers (revision 0004; src/profilestore/expressions/, docs/expressions.md).
--
-- The compiler (expressions/sql.py) never builds SQL from text: it calls these functions with bound
-- parameters.  Each one is total: on any data it returns a value or NULL ("undefined"), never an error, so
-- one odd row (an impossible date, a number out of range) cannot abort a query.  Checks are pure where
-- possible; the few places that rely on Postgres raising (float overflow/underflow, float8 input) catch
-- exactly that error, behind a fast path that never raises, so the subtransaction is rarely paid for.
-- The plain-Python evaluator (expressions/values.py) mirrors every function here; tests keep them equal.

-- The keys of a JSON object (of anything else: none); the expression of a GIN index, so IMMUTABLE and
-- not STRICT (NULL -> '{}' keeps `keys @> ARRAY[name]` never NULL).
CREATE FUNCTION profilestore_keys(j jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(k), '{}')
    FROM jsonb_object_keys(CASE WHEN jsonb_typeof(j) = 'object' THEN j END) k
$$;

-- A JSON number as a double; NULL for non-numbers and for numbers a double cannot hold.
CREATE FUNCTION profilestore_number(j jsonb) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(j) = 'number' THEN
        CASE WHEN j::numeric = 0 THEN 0::float8
             WHEN abs(j::numeric) BETWEEN 4.9406564584124654e-324 AND 1.7976931348623157e308
             THEN j::numeric::float8
        END
    END
$$;

-- A JSON string's text; NULL for anything else.
CREATE FUNCTION profilestore_text(j jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(j) = 'string' THEN j #>> '{}' END
$$;

-- Truthiness (boolean()): false, 0, "", "false"/"0" (ASCII case-insensitive), [], {}, null are false.
CREATE FUNCTION profilestore_truthy(j jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(j)
        WHEN 'boolean' THEN j = 'true'::jsonb
        WHEN 'number' THEN j::numeric <> 0
        WHEN 'string' THEN translate(j #>> '{}', 'FALSE', 'false') NOT IN ('', '0', 'false')
        WHEN 'array' THEN jsonb_array_length(j) > 0
        WHEN 'object' THEN j <> '{}'::jsonb
        ELSE false
    END
$$;

-- Ordering of two JSON values: -1, 0, 1; strings by code point, numbers as doubles; NULL otherwise.
CREATE FUNCTION profilestore_cmp(a jsonb, b jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(a) = 'string' AND jsonb_typeof(b) = 'string' THEN
            CASE WHEN (a #>> '{}') COLLATE "C" < (b #>> '{}') COLLATE "C" THEN -1
                 WHEN (a #>> '{}') = (b #>> '{}') THEN 0 ELSE 1 END
        ELSE
            CASE WHEN profilestore_number(a) < profilestore_number(b) THEN -1
                 WHEN profilestore_number(a) = profilestore_number(b) THEN 0
                 WHEN profilestore_number(a) > profilestore_number(b) THEN 1 END
    END
$$;

-- `a in b`: membership (jsonb equality) when b is an array, substring when both are strings, else NULL.
CREATE FUNCTION profilestore_in(a jsonb, b jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(b)
        WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements(b) e WHERE e = a)
        WHEN 'string' THEN
            CASE WHEN jsonb_typeof(a) = 'string' THEN strpos(b #>> '{}', a #>> '{}') > 0 END
    END
$$;

-- ISO 8601 text -> epoch seconds (UTC unless an offset is given); NULL unless a valid date and time.
-- YYYY-MM-DD, then optionally [T or space]HH:MM[:SS[.fraction]] and Z or +HH:MM / +HHMM.
CREATE FUNCTION profilestore_iso_epoch(s text) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    g text[] := regexp_match(s,
        '^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]+)?)?'
        '(?:(Z)|([+-])([0-9]{2}):?([0-9]{2}))?)?$');
    y integer; m integer; d integer; hh integer; mi integer; ss integer; last integer; off integer := 0;
    whole bigint;
BEGIN
    IF g IS NULL THEN
        RETURN NULL;
    END IF;
    y := g[1]::integer; m := g[2]::integer; d := g[3]::integer;
    hh := coalesce(g[4]::integer, 0); mi := coalesce(g[5]::integer, 0); ss := coalesce(g[6]::integer, 0);
    IF y < 1 OR m < 1 OR m > 12 OR d < 1 OR hh > 23 OR mi > 59 OR ss > 59 THEN
        RETURN NULL;
    END IF;
    last := CASE WHEN m = 2 THEN CASE WHEN (mod(y, 4) = 0 AND mod(y, 100) <> 0) OR mod(y, 400) = 0 THEN 29 ELSE 28 END
                 WHEN m IN (4, 6, 9, 11) THEN 30 ELSE 31 END;
    IF d > last THEN
        RETURN NULL;
    END IF;
    IF g[9] IS NOT NULL THEN
        IF g[10]::integer > 23 OR g[11]::integer > 59 THEN
            RETURN NULL;
        END IF;
        off := (g[10]::integer * 3600 + g[11]::integer * 60) * CASE WHEN g[9] = '-' THEN -1 ELSE 1 END;
    END IF;
    whole := (make_date(y, m, d) - DATE '1970-01-01')::bigint * 86400 + hh * 3600 + mi * 60 + ss - off;
    RETURN whole::float8 + coalesce(('0' || g[7])::float8, 0);
END
$$;

-- datetime(x) of a JSON value: ISO text or epoch seconds.
CREATE FUNCTION profilestore_to_epoch(j jsonb) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(j)
        WHEN 'string' THEN profilestore_iso_epoch(j #>> '{}')
        WHEN 'number' THEN profilestore_number(j)
    END
$$;

-- A datetime against a JSON value: the value's epoch when it is an ISO string.
CREATE FUNCTION profilestore_string_epoch(j jsonb) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(j) = 'string' THEN profilestore_iso_epoch(j #>> '{}') END
$$;

-- A datetime `in` a list: some element is an ISO string of the same instant.
CREATE FUNCTION profilestore_epoch_in(a float8, b jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(b) = 'array' THEN
        EXISTS (SELECT 1 FROM jsonb_array_elements(b) e WHERE profilestore_string_epoch(e) = a)
    END
$$;

-- Epoch seconds -> "YYYY-MM-DDTHH:MM:SS" (UTC, fraction dropped); NULL outside years 1-9999.
CREATE FUNCTION profilestore_iso_text(x float8) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN x >= -62135596800 AND x < 253402300800 THEN
        to_char(to_timestamp(floor(x)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    END
$$;

-- number(x) of a string: a decimal number ([+-]digits[.digits][e[+-]digits]); NULL if not one or out of
-- a double's range.
CREATE FUNCTION profilestore_text_number(s text) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF s !~ '^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$' THEN
        RETURN NULL;
    END IF;
    IF length(s) < 300 AND s !~ '[eE]' THEN
        RETURN s::float8;  -- under 1e300 and, unless zero, over 1e-300: cannot raise
    END IF;
    BEGIN
        RETURN s::float8;
    EXCEPTION WHEN numeric_value_out_of_range OR invalid_text_representation THEN
        RETURN NULL;
    END;
END
$$;

-- number(x) of a JSON value.
CREATE FUNCTION profilestore_to_number(j jsonb) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(j)
        WHEN 'number' THEN profilestore_number(j)
        WHEN 'string' THEN profilestore_text_number(j #>> '{}')
        WHEN 'boolean' THEN CASE WHEN j = 'true'::jsonb THEN 1::float8 ELSE 0::float8 END
    END
$$;

-- A double's shortest round-trip decimal, laid out as JavaScript's Number#toString does
-- (1, 0.5, 1e+21, 1e-7, 123456789012345680000).
CREATE FUNCTION profilestore_format_number(x float8) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET extra_float_digits = 1 AS $$
DECLARE
    g text[] := regexp_match(x::text, '^(-?)([0-9]+)(?:\.([0-9]+))?(?:e([+-][0-9]+))?$');
    digits text;
    n integer;
    k integer;
    e integer;
    body text;
BEGIN
    IF g IS NULL THEN
        RETURN NULL;  -- NaN, Infinity
    END IF;
    digits := g[2] || coalesce(g[3], '');
    n := length(g[2]) + coalesce(g[4]::integer, 0);
    WHILE left(digits, 1) = '0' LOOP
        digits := substr(digits, 2);
        n := n - 1;
    END LOOP;
    digits := rtrim(digits, '0');
    IF digits = '' THEN
        RETURN '0';
    END IF;
    k := length(digits);
    IF k <= n AND n <= 21 THEN
        body := digits || repeat('0', n - k);
    ELSIF 0 < n AND n <= 21 THEN
        body := left(digits, n) || '.' || substr(digits, n + 1);
    ELSIF -6 < n AND n <= 0 THEN
        body := '0.' || repeat('0', -n) || digits;
    ELSE
        e := n - 1;
        body := left(digits, 1) || CASE WHEN k > 1 THEN '.' || substr(digits, 2) ELSE '' END
            || 'e' || CASE WHEN e >= 0 THEN '+' ELSE '-' END || abs(e)::text;
    END IF;
    RETURN g[1] || body;
END
$$;

-- string(x) of a JSON value: a string's text, a number's decimal, "true"/"false"; NULL otherwise.
CREATE FUNCTION profilestore_to_string(j jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(j)
        WHEN 'string' THEN j #>> '{}'
        WHEN 'number' THEN profilestore_format_number(profilestore_number(j))
        WHEN 'boolean' THEN j #>> '{}'
    END
$$;

-- length(x): characters of a string, elements of a list, keys of an object.
CREATE FUNCTION profilestore_length(j jsonb) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(j)
        WHEN 'string' THEN length(j #>> '{}')::float8
        WHEN 'array' THEN jsonb_array_length(j)::float8
        WHEN 'object' THEN (SELECT count(*) FROM jsonb_object_keys(j))::float8
    END
$$;

-- lower/upper change ASCII letters only (the "C" collation), whatever the server's locale.
CREATE FUNCTION profilestore_lower(j jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(j) = 'string' THEN to_jsonb(lower((j #>> '{}') COLLATE "C")) END
$$;

CREATE FUNCTION profilestore_upper(j jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(j) = 'string' THEN to_jsonb(upper((j #>> '{}') COLLATE "C")) END
$$;

CREATE FUNCTION profilestore_has_prefix(a jsonb, b jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(a) = 'string' AND jsonb_typeof(b) = 'string' THEN
        starts_with((a #>> '{}') COLLATE "C", (b #>> '{}') COLLATE "C")
    END
$$;

CREATE FUNCTION profilestore_has_suffix(a jsonb, b jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(a) = 'string' AND jsonb_typeof(b) = 'string' THEN
        right(a #>> '{}', length(b #>> '{}')) = (b #>> '{}') COLLATE "C"
    END
$$;

-- round() halves away from zero.
CREATE FUNCTION profilestore_round(x float8) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT sign(x) * CASE WHEN abs(x) - floor(abs(x)) >= 0.5 THEN ceil(abs(x)) ELSE floor(abs(x)) END
$$;

-- Arithmetic on doubles, NULL where Postgres would raise (overflow, underflow to zero, division by zero).
CREATE FUNCTION profilestore_add(a float8, b float8) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF abs(a) < 1e300 AND abs(b) < 1e300 THEN
        RETURN a + b;
    END IF;
    BEGIN
        RETURN a + b;
    EXCEPTION WHEN numeric_value_out_of_range THEN
        RETURN NULL;
    END;
END
$$;

CREATE FUNCTION profilestore_sub(a float8, b float8) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT profilestore_add(a, -b)
$$;

CREATE FUNCTION profilestore_mul(a float8, b float8) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF a = 0 OR b = 0 OR (abs(a) BETWEEN 1e-150 AND 1e150 AND abs(b) BETWEEN 1e-150 AND 1e150) THEN
        RETURN a * b;
    END IF;
    BEGIN
        RETURN a * b;
    EXCEPTION WHEN numeric_value_out_of_range THEN
        RETURN NULL;
    END;
END
$$;

CREATE FUNCTION profilestore_div(a float8, b float8) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF b = 0 THEN
        RETURN NULL;
    END IF;
    IF a = 0 OR (abs(a) BETWEEN 1e-150 AND 1e150 AND abs(b) BETWEEN 1e-150 AND 1e150) THEN
        RETURN a / b;
    END IF;
    BEGIN
        RETURN a / b;
    EXCEPTION WHEN numeric_value_out_of_range THEN
        RETURN NULL;
    END;
END
$$;

-- The IEEE bits of a double.
CREATE FUNCTION profilestore_float_bits(x float8) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ('x' || encode(float8send(x), 'hex'))::bit(64)::bigint
$$;

-- C's fmod (the result has the sign of the dividend), exact like C's: both operands written as
-- integer * 2^e with a common e, the remainder taken in numeric (exact), scaled back (exact).
CREATE FUNCTION profilestore_fmod(a float8, b float8) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    ba bigint; bb bigint; ea integer; eb integer; ma numeric; mb numeric; e integer; r numeric;
BEGIN
    IF b = 0 THEN
        RETURN NULL;
    END IF;
    IF a = 0 THEN
        RETURN a;
    END IF;
    IF a = trunc(a) AND b = trunc(b) AND abs(a) < 9007199254740992 AND abs(b) < 9007199254740992 THEN
        RETURN mod(a::bigint, b::bigint)::float8;
    END IF;
    ba := profilestore_float_bits(a);
    bb := profilestore_float_bits(b);
    ea := ((ba >> 52) & 2047)::integer;
    eb := ((bb >> 52) & 2047)::integer;
    ma := (ba & 4503599627370495)::numeric;
    mb := (bb & 4503599627370495)::numeric;
    IF ea = 0 THEN ea := 1; ELSE ma := ma + 4503599627370496; END IF;
    IF eb = 0 THEN eb := 1; ELSE mb := mb + 4503599627370496; END IF;
    ea := ea - 1075;
    eb := eb - 1075;
    e := least(ea, eb);
    r := trunc(mod(trunc(ma * power(2::numeric, ea - e)), trunc(mb * power(2::numeric, eb - e))));
    RETURN sign(a) * (r::float8 * power(2::float8, e));
END
$$;
