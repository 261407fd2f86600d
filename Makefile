# Entry points a newcomer looks for; each target is one script, documented there.
.PHONY: demo demo-down test ci bench-operator

# A cluster (KUBECONFIG, kind, or the local e2e cluster), the image, the chart and the
# quick start in examples/, ending with the pod that reads its secret. See e2e/demo.
demo:
	e2e/demo

# Removes the local cluster (or the kind cluster, with STRONGROOM_CLUSTER=kind).
demo-down:
	e2e/cluster down

# Unit and hsm tiers (no cluster needed).
test:
	scripts/test

# What CI runs: the tiers above, then the cluster and e2e tiers on a local cluster.
ci:
	.ci/run

# 200 Key resources against the same 200 keys through the pool's API, on the cluster
# in KUBECONFIG with strongroom installed (after `make demo`).
bench-operator:
	$${STRONGROOM_CACHE:-$$HOME/.cache/strongroom}/venv/bin/python bench/operator_keys.py
