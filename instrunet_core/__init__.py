"""instrunet_core (placeholder, replaced by the runtime)."""
