"""`make sim`: a discrete-event simulator that drives Beemesh's sans-IO cores at fleet scale.

See run.py for what is modelled and what is left out (issue 21, "Scale").
"""
