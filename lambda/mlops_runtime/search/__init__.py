"""Semantic-search indexing shared by the indexer Lambda and the bulk processing job (no Powertools)."""
