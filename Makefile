# Two entry points for a fresh machine; both create .venv on first use.
.PHONY: demo test test-fast venv

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
