"""Start annotate and refine from CVAT's web UI: issue comments delivered by webhooks (docs/webhooks.md)."""
