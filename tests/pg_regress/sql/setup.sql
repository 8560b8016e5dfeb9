-- Runs first: the extension and two helpers used by the other files.
CREATE EXTENSION smslink;
CREATE SCHEMA regress;
-- Runs a statement and shows its SQLSTATE and message (the statement's rows roll back).
CREATE FUNCTION regress.err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- Tokens are random per database (the key is); mask them in output.
CREATE FUNCTION regress.mask(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(t, '/c/[0-9A-Za-z]{7,12}', '/c/<token>', 'g')
$$;
