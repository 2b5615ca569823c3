"""Edge session state: store and per-session content."""
