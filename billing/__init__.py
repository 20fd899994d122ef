"""Runtime glue shared by the API, the flows and the CLI: settings, Redis, key names."""
