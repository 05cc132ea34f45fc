"""Lab tooling: several real machines on one host (`make run`, the tests, the benchmarks).

Not used by an agent in production: a machine here is a network namespace with its own
address, Podman service, state dir, agent and work plane, all on this host.
"""
