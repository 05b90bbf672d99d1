"""The `s4al` command: one Typer app assembled from the command groups, one module each.

No group imports torch at module level, so `s4al --help` and the service commands stay fast.
"""

import typer

from cli import cycles, data, datasets, demo, model, server, simulate, tokens

app = typer.Typer(help="s4al: active semi-supervised labeling for semantic segmentation.",
                  no_args_is_help=True)

for group in (server, tokens, datasets, cycles, model, demo, simulate, data):
    group.register(app)
