"""Writes of the inference app, one module per job.

``registry``: import, deploy, roll back, shadow, retire. ``evaluation``: local
evaluations of a version on a site's labelled images. ``analysis``: what the
``inference.analyse_case`` task runs, and warming the model a worker will need.
``sweep``: re-queuing what waits too long.
"""
