"""The Users page: browse, filter, inspect, edit, import and export profiles in the browser.

Server-rendered (Jinja2 templates in templates/, one stylesheet and one small script in static/, shipped in
the wheel; no build step, no CDN).  session.py (signed cookies, CSRF) and deps.py (the signed-in project of a
request) guard every page; render.py shows values; charts.py and linechart.py draw SVG.  Pages: auth.py
(sign in, switch, sign out), users.py (the table, its count and export), profile.py (one profile and its
activity), cohorts.py with cohort_filter.py (the filter builder, saved cohorts), edit.py with edit_form.py
(Add/Edit Profile, written through the ingestion pipeline), importer.py (the CSV import wizard), insights.py
(events over time).  Queries are the read API's own functions (query/), never copies.
"""
