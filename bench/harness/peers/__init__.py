"""The peers of the peers scenario: supervisord, pm2 and ``steward local``, driven by PID.

supervisord (PyPI ``supervisor``) lives in a venv and pm2 (npm ``pm2``) in an
``npm install --prefix`` directory, both under ``~/.cache/steward/bench-peers/``,
made once per pinned version (a ``.complete`` marker says the install finished).
Each instance gets its own files inside the run's work directory (supervisord's
config, socket and logs; pm2's ``PM2_HOME``), so nothing lands in the user's
home, and every process carries the run's marker plus a scope of its own, so
whatever an instance leaves behind is killed by PID (``Reaper.sweep_scope``).
"""
