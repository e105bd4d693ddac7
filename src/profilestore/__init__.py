"""profilestore: a self-hosted, Mixpanel-compatible user-profile store on Postgres."""

__version__ = "0.1.0"
