"""Controllers: pure reconcile functions that turn a snapshot of the store into actions.

Each module handles one concern (services, restarts, removal, gc, nodes). They take the objects
they need and the time, and return `actions.Action`s; the thin loop around them is the only
place that reads or writes the store.
"""
