"""Recipes: the commands that compose components into a job (train, plan, verify, eval). Nothing below imports them."""
