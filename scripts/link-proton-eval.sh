# Sourced by the evaluation scripts: links the real adult proton MRI of ../shared/data (evaluation only, no
# licence to copy or train on) into runs/proton-eval/{images,labels} for reading; returns 1 when it is absent.
link_proton_eval() {
  local data
  data=$(cd .. && pwd)/shared/data/adult-proton-lung-mri
  if [ ! -d "$data" ]; then echo "skipped the proton MRI: $data is absent" >&2; return 1; fi
  mkdir -p runs/proton-eval/images runs/proton-eval/labels
  for case in proton-0006 proton-0012; do
    ln -sfn "$data/$case.nii.gz" "runs/proton-eval/images/$case.nii.gz"
    ln -sfn "$data/${case}_lungs.nii.gz" "runs/proton-eval/labels/$case.nii.gz"
  done
}
