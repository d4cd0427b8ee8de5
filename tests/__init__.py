"""The package of the whole test suite, so unit and end-to-end test modules may share names."""
