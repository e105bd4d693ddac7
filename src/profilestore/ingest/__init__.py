"""Mixpanel-compatible ingestion: /engage, /groups, /track and /import."""
