"""Runtime code of the platform's Lambda functions and jobs.

Layout: ``domain`` modules are pure (no boto3), ``adapters`` do the I/O behind small
interfaces, ``handlers`` are thin Lambda entry points that wire the two.
"""
