"""Fixtures shared by every test package."""

# The loopback S3 server fixtures (s3_server, flaky_s3): tests/s3_fixtures.py.
pytest_plugins = ["tests.s3_fixtures"]
