"""Experiments that train several runs and compare them. Layering: uses the training loop and the
evaluation package; only the command-line scripts use it.

    crosslingual.py   the book's cross-lingual F1 table and the French learning curve
"""
