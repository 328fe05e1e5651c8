"""A running gateway assembled from a validated configuration: workers, signals, logging."""
