"""LogQL: parser and evaluator."""
