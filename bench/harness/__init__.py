"""The machinery the benchmark scripts (bench/engage.py, track.py, query.py, cohorts.py) share; each script
keeps its own data, phases, arguments and main().

- db: the bench's own database (use_database, bench_url, create_database, drop_database) and its projects
- server: `profilestore serve` as a child process (Server, free_port) and the API's Basic header (basic)
- machine: the machine line every bench prints (machine_facts, announce_machine)
- proc: CPU per party from /proc (cpu_snapshot, cpu_split, cpu_line) and a process's RSS (RssSampler)
- stats: throughput and latency of a phase (PhaseResult), timings of repeated calls (Timing, timed)
- report: the markdown table of the read benches (Row, markdown, ms, verdict)
- pyspy: py-spy on the server and the summary of its samples (start_profile)
- data: the plan names of the ingestion payloads (PLANS), the SQL profile loader (load_profiles)
"""
