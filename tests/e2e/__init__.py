"""End-to-end tests: the real `dvc`, stages and tools in copies of the project, a browser, an S3 server."""
