"""Production reloads: process observation, the stand-alone watch loop, and actions.

The server integrations (:mod:`relaunch.integrations.gunicorn`, ``uwsgi``,
``mod_wsgi``) and ``relaunch watch`` share these pieces.
"""
