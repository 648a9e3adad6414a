"""Live updates: best-effort wake-ups of consumers, and the websocket consumer base they share."""
