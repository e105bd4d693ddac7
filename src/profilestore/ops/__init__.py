"""Running the service: request ids and logs (requests.py), Prometheus metrics (metrics.py)."""
