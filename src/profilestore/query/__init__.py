"""The read API: Mixpanel's profile query (/api/2.0/engage) with pagination sessions, and profile export."""
