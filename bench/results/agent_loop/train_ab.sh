#!/bin/bash
# Whole-process wall time of `python -m agent train --task two_step --episodes 2000`, interleaved:
# each round runs before/after x fast/reference, order rotated per round.
export OMP_NUM_THREADS=1
PY=${PYTHON:-python}  # run from the after checkout; BEFORE=DIR is the before checkout
AFTER=$(pwd)
out=${OUT:-train_times.txt}; out=$(realpath -m $out); runs=$(mktemp -d); : > $out
combos=("before fast" "after fast" "before reference" "after reference")
for round in 1 2 3 4; do
  for i in 0 1 2 3; do
    c=(${combos[$(( (i + round) % 4 ))]})
    dir=$AFTER; [ ${c[0]} = before ] && dir=$BEFORE
    rm -rf $runs/${c[0]}_${c[1]}
    cd $dir
    s=$(date +%s.%N)
    $PY -m agent train --task two_step --episodes 2000 --core ${c[1]} --out $runs/${c[0]}_${c[1]} > $runs/log_${c[0]}_${c[1]}_$round.log 2>&1 || echo FAIL
    e=$(date +%s.%N)
    echo "$round ${c[0]} ${c[1]} $(echo "$e - $s" | bc)" | tee -a $out
  done
done
