"""duban service: app factory, settings, database, auth and the REST API."""
