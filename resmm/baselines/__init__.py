"""Baselines that resmm is measured against: what a user would write instead, on the same data and split."""
