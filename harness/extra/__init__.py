"""Integrations with other tools, the top layer beside ``cli``: the pytest plugin
(``pytest_plugin``), which pytest loads through the ``pytest11`` entry point."""
