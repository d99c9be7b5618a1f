"""A local imitation of the Apple Business API (its own process): see server.py and service.py."""
