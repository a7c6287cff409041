"""Business events: capture, schemas, a durable queue, a dead-letter queue, and the product
analytics built on them (trends, funnels, retention, DAU/MAU, revenue)."""
