"""Helpers the tests share: tiny datasets (`data`) and project copies run with the real `dvc` (`project`)."""
