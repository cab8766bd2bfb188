# Two entry points for a fresh machine; both create .venv on first use.
.PHONY: demo test test-fast venv train-ct

venv:
	bash scripts/setup-venv.sh

# Segment the bundled sample with the bundled model; outputs go to demo-output/.
demo: venv
	.venv/bin/neonatal-lung-seg segment Resources/Sample/sample-neonatal-chest.nii.gz -o demo-output --overwrite

# The whole test suite (slow tests included).
test: venv
	.venv/bin/python -m pytest Testing -q

# Everything except tests marked slow.
test-fast: venv
	.venv/bin/python -m pytest Testing -q -m "not slow"

# Train the published recipe on the real public CT lung slices (issue 3's real-data check, CPU ~10 min).
train-ct: venv
	test -d runs/ct-lung-slices-data || .venv/bin/neonatal-lung-seg prepare-ct -o runs/ct-lung-slices-data
	.venv/bin/neonatal-lung-seg train --config Training/configs/ct-lung-slices.yaml
