"""pytest plugin (placeholder until the SDK lands)."""
