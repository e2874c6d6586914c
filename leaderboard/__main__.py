"""`python -m leaderboard`: see leaderboard/run.py."""
from data.cli import run
from leaderboard.run import main

raise SystemExit(run(main))
