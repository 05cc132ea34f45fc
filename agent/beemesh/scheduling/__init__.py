"""Scheduling: the auction that places each task on one machine.

Sans-IO cores (`auction`, `scoring`, `messages`): pure state machines, time and randomness
injected by the caller; `driver` is the trio shell that feeds them messages and carries out
what they decide.
"""
