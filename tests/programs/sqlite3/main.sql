-- stdin: one number per line; the request's args are in the table args(value).
CREATE TABLE input(value TEXT);
.import /dev/stdin input
SELECT (SELECT COALESCE(SUM(CAST(value AS INTEGER)), 0) FROM input)
     + (SELECT COALESCE(SUM(CAST(value AS INTEGER)), 0) FROM args);
