"""Remote read path: reads below the local log start served from the bucket (see README.md)."""
