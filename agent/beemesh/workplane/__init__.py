"""The work plane: workload identities, service records, discovery and self-healing."""
