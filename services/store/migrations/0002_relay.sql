-- Where the relay has published up to: it moves only after the broker confirmed.
CREATE TABLE relay_checkpoint (
    name        text PRIMARY KEY,
    position    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
