"""Converting whole asset libraries: sources, a resumable manifest, local and Ray executors, the report."""
