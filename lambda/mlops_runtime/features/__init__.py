"""Feature Store ingestion: schemas and record validation (``schema``), writers (``store``), ``ingest``."""
