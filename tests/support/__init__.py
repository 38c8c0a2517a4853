"""Test helpers: small real HTTP servers that follow the documented APIs of our dependencies."""
