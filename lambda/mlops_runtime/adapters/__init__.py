"""I/O behind small interfaces (boto3 clients are created lazily, on first use)."""
