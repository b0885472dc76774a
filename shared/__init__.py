"""The contract between wxstream's services: settings, keys, events, streams, logging."""
