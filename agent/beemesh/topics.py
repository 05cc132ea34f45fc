"""The machine plane's pub/sub topics (which kinds each carries: `machine.inbound`)."""

TOPIC_TASKS = "scheduler-tasks"  # Task; the operator's Delete, Cordon, Drain; RelayedDelete
TOPIC_PROPOSALS = "scheduler-proposals"  # Bid
TOPIC_EVENTS = "scheduler-events"  # MachineRecord, MachineWithdraw, LeaseHint, Deployed, Failed
