"""Pure data model shared by scrape, tsdb, promql and rules (labels, samples)."""
