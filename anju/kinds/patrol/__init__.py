"""Patrol check-points (巡更点): a guard's round recorded at each point."""
