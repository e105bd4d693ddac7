"""Mixpanel-compatible ingestion: /engage, /groups, /track and /import.

wire.py         the transport: every form the SDKs and scripts send, decoded to parameters and records
decode.py       JSON text -> records, each storable as decoded or refused alone (field and reason)
pipeline.py     the one skeleton: limits, validation, project tokens, one statement, the one-by-one fallback
responses.py    Mixpanel-shaped answers, produced in one place
profiles/       /engage and /groups: the update rules (records.py) and their hot-path SQL (sql.py)
events/         /track and /import: the event rules (records.py) and their hot-path SQL (sql.py)
warnings.py     GET /api/ingestion-warnings: conflicts found while applying updates
"""
