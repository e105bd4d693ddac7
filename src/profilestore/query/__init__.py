"""The read API.

profiles/      /api/2.0/engage with its pagination sessions, and the profile export
events/        /api/2.0/export (raw events, profiles joined) and /api/events/query (counts and uniques)
params.py      parameters from the query string, a form or a JSON body; `where` as a parameter
streaming.py   what both streamed exports share
"""
