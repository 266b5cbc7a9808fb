"""The pieces of `scripts/stress.py`: the service process, the hostile clients, the scenarios."""
