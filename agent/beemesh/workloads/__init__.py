"""Workloads: the operator's signed manifests and deletes, kept by every machine; applying,
deleting and relaying them; the checks on a heal; late joiners fetching manifests."""
