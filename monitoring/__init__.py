"""Monitoring job of the platform: data drift, prediction drift and model quality of an endpoint.

``monitor.py`` is the entry point of a scheduled SageMaker processing job (scikit-learn image);
``capture.py`` parses data-capture and ground-truth files, ``drift.py`` holds the streaming drift
statistics, ``quality.py`` the model-quality metrics and ``report.py`` writes ``report.json``,
``report.html`` and the CloudWatch metric data. See ``README.md`` in this directory.

The modules keep to Python 3.8 syntax and to numpy and scipy (plus boto3, imported only to
publish metrics), and import one another without the package name, so the job can run them
from a flat code directory (``python3 monitor.py ...``) as well as ``monitoring.monitor``.
"""
