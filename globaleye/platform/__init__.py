"""The composition root: ``twistd globaleye`` (tap), the configuration schema and its bindings to settings, the log directory."""
