-- Live usage reads a customer's events stored since it last looked: by customer, then order of
-- arrival.
CREATE INDEX events_by_customer_seq ON events (customer_id, seq);
