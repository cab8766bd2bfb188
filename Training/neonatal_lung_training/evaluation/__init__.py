"""Scoring models: overlap and surface metrics, evaluation of model folders on labelled folders, and the
Markdown reports and plots the docs link to. Imports only the engine (and ``synthesis`` for held-out cases).
"""
