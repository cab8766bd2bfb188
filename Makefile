# Two entry points for a fresh machine; both create .venv on first use.
.PHONY: demo test test-fast venv train-ct correction-loop correction-loop-small bench

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

# Issue 5: fine-tune the bundled model on N = 1, 2, 5, 10, 20 cases corrected through the Slicer module's export
# path (real CT slices and synthetic T2-HASTE MRI), uncertainty-ranked vs random selection; writes
# docs/correction-loop.md and docs/images/correction-loop.png (about 2 hours on the 2-core CPU; resumable).
correction-loop: venv
	OMP_NUM_THREADS=1 .venv/bin/python Training/scripts/correction_loop.py --work runs/correction-loop --freeze-encoder

# The same at small scale (CT only, N = 1, 2, 5, uncertainty-ranked; about 15 minutes), into runs/.
correction-loop-small: venv
	OMP_NUM_THREADS=1 .venv/bin/python Training/scripts/correction_loop.py --work runs/correction-loop-small \
		--domains ct --sizes 1 2 5 --strategies uncertainty \
		--out runs/correction-loop-small/correction-loop.md --figure runs/correction-loop-small/correction-loop.png

# Speed: naive baseline vs the default path, one run, medians; writes benchmarks/results/ (see BENCHMARKS.md).
# Do not set OMP_NUM_THREADS for it; run when the machine is otherwise idle.
bench: venv
	.venv/bin/python benchmarks/run.py
