"""Helpers for the example bot's end-to-end tests: a fake Graph API server, the
bot as a subprocess, and signed webhook payloads. Every number, id, name and
secret in them is made up."""
