"""Where programs run: greenlet releases in cached venvs, interpreters, emulated CPUs."""
