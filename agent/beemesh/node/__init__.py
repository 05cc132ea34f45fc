"""This machine: its capacity and reservations, the pods it runs (`local`), their health
(`health` decides, `checks` probes, `kubelet` acts), cordon and drain state, fencing."""
