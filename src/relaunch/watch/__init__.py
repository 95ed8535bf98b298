"""What relaunch watches (watchset, rules), how it learns of changes (events), and
when a burst of changes becomes one reload (settle, fingerprint)."""
