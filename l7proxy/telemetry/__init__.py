"""What the gateway records: audit events and Prometheus metrics."""
