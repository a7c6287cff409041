"""Storage engine shared by all signals: write-ahead log, columnar segments, relational state."""
