"""wxstream's gateway service."""
