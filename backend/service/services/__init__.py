"""The service's work, free of HTTP: the shape library, uploads, the job queue and its jobs, compute slots, nf2vec queries."""
