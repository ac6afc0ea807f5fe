"""Pure domain logic (standard library only, no boto3, no I/O): fast to import and to test."""
