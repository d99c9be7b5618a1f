"""Helpers shared by the tests; the fixtures stay in the conftest.py files, which import from here.

users        make_user / make_users / make_device: the one user factory
job_loop     run_job / JobLoop: a job driven in-process through vpp/tasks.py, publishing captured
fake_apple   FakeApple, an in-memory stand-in for VppClient
sandbox      store_sandbox_token, Api (raw HTTP), Receiver (a notification endpoint)
apns         ApnsKey, FakeApns, new_pem: a fake APNs and a throwaway provider key
worker       a real Celery worker subprocess, the outbox, wait_until
hammer       a child process sending requests through a Redis-shared rate limiter
redis_db     the suite's Redis (tests/redis_session.py) for limiter and token-store tests
vpp_api      content tokens and Apple JSON bodies for the client tests
browser      where Chromium is, the browser admin's login
network      the loopback-only socket guard
"""
