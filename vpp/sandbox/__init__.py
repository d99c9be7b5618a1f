"""A faithful local imitation of Apple's "App, Book, and Subscription Management" v2 service.

Runs as its own process (``manage.py vpp_sandbox``) with its own state file; it never touches
the console's database. See ``server.py`` for the HTTP surface and ``options.py`` for the
start-up options and run-time faults.
"""
