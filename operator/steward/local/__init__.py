"""The no-cluster mode: ManagedService manifests from files, status in a local state dir."""
