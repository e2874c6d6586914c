"""The leaderboard: every method on the same users of each task, scored by eval/, with paired intervals and cost.

It is a reader of run folders (runtime/) plus a list of method commands (leaderboard.cells); it implements no method.
"""
