"""The HTTP ingest tier: validates events and appends them to the Redis input stream."""
