"""CSV profile imports (docs/import.md): the `import-csv` command and the `/api/profiles/import` API.

reading.py (bytes to rows with line numbers) -> plan.py (options and header to columns; columns.py: types and
reserved names) -> chunks.py (rows to COPY-ready chunks, in a thread) -> run.py (each chunk one transaction,
SQL in sql.py); jobs.py keeps every import as a job; service.py and routes.py are the HTTP side; console.py
the command's progress bar and summary.
"""
