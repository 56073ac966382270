-- The job `ratecard rate` does for benches/duckdb/plan.json, as one DuckDB query.
-- {events} is replaced by the NDJSON file's path (quoted for SQL by duckdb_rate.py).
--
-- 1. read the NDJSON with a declared schema (numbers as exact DECIMAL, as Ratecard reads them;
--    timestamps parsed as RFC 3339 instants);
-- 2. keep the events of the plan's three codes inside the billing period (November 2026, UTC);
-- 3. deduplicate by (customer, id): Ratecard keeps one event per id per customer (re-sends are
--    exact copies, so any copy is the first one);
-- 4. aggregate per customer and metric: count of api.request, sum of value for storage.write and
--    egress;
-- 5. price: graduated API calls (0.0001 up to 100,000; 0.00008 up to 1,000,000; 0.00005 above),
--    storage and egress per unit at 0.02; round each line half-up to cents; total per customer.
WITH events AS (
  SELECT id, customer, code, properties.value AS value
  FROM read_ndjson({events}, format = 'newline_delimited',
    columns = {id: 'VARCHAR', customer: 'VARCHAR', timestamp: 'TIMESTAMPTZ', code: 'VARCHAR',
               properties: 'STRUCT(value DECIMAL(18,2))'})
  WHERE code IN ('api.request', 'storage.write', 'egress')
    AND timestamp >= TIMESTAMPTZ '2026-11-01 00:00:00+00'
    AND timestamp <  TIMESTAMPTZ '2026-12-01 00:00:00+00'
),
deduped AS (
  SELECT customer, id, any_value(code) AS code, any_value(value) AS value
  FROM events
  GROUP BY customer, id
),
usage AS (
  SELECT customer,
    count(*) FILTER (WHERE code = 'api.request') AS api_calls,
    coalesce(sum(value) FILTER (WHERE code = 'storage.write'), 0) AS storage,
    coalesce(sum(value) FILTER (WHERE code = 'egress'), 0) AS egress
  FROM deduped
  GROUP BY customer
),
lines AS (
  SELECT customer, api_calls, storage, egress,
    -- DuckDB's round() on a DECIMAL rounds half away from zero: half-up for these amounts.
    round(least(api_calls, 100000) * 0.0001
          + greatest(least(api_calls, 1000000) - 100000, 0) * 0.00008
          + greatest(api_calls - 1000000, 0) * 0.00005, 2) AS api_amount,
    round(storage * 0.02, 2) AS storage_amount,
    round(egress * 0.02, 2) AS egress_amount
  FROM usage
)
SELECT customer, api_calls, storage, egress, api_amount, storage_amount, egress_amount,
  api_amount + storage_amount + egress_amount AS total
FROM lines
ORDER BY customer
