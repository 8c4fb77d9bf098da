"""Stage 1: the ops under ops/<framework>/<name> (discover.py), the rules their names follow
(names.py), and `ops add` (scaffold.py, with the shared kernel templates in templates/)."""
