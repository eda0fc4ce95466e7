"""``python -m tinker_actors.server [serve] ...``."""

from .cli import main

raise SystemExit(main())
