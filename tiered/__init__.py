"""Cold tier: object store, manifests, archiver, tiered-storage service (see README.md)."""
