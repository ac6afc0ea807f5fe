"""The settings of each function: one typed model shared by the stack, the handler and the rehearsal.

The stack builds a model from the validated platform config (``mlops_platform/function_settings.py``)
and passes it as ONE environment variable, ``MLOPS_SETTINGS`` (``settings_env``), holding the model's
JSON; the handler validates that JSON once, at cold start (``FunctionSettings.from_env`` in a
``lazy.Lazy``); the local rehearsal builds the same objects. Every rule here therefore fails
``make synth`` with the config's one-line error before it could fail a request.

One module per function (or family of functions sharing their settings), on the shared
:mod:`.base`, so that a handler imports, and its asset ships, its own model and that model's
dependencies only (``mlops_platform/lambda_bundles.py`` follows the imports):

- :mod:`.deployer`, :mod:`.endpoint_scaler`, :mod:`.model_promotion`, :mod:`.endpoint_teardown`:
  the deployment functions, each with its own domain types;
- :mod:`.experiments`: the inference API and the experiment controller;
- :mod:`.feedback`: the feedback API and its dead-letter replay;
- :mod:`.monitoring`: the monitoring launcher and the retraining trigger;
- :mod:`.features`: a feature group's ingest function.

This file imports nothing: every handler loads it.
"""
