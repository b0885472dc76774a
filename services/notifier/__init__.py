"""wxstream's notifier service."""
