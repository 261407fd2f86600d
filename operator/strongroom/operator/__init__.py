"""`strongroom operator`: kopf handlers, thin: parse the resource, call reconcile, write status."""
