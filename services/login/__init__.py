"""wxstream's login service."""
