"""Fast tests: no `dvc` subprocess, no browser, no project copies (`pytest -m "not e2e"` runs these)."""
