"""Personal identities: what facetalk learns from a person's footage, and the registry
that keeps each identity's versions on disk."""
