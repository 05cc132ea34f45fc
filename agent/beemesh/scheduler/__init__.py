"""Sans-IO scheduling: pure state machines, time and randomness injected by the caller."""
