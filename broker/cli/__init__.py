"""The `shoal` command line: `start` runs a node; the others are Kafka clients."""
