#!/usr/bin/env bash
# Assemble the data sets carried to a lent GPU machine in pieces (each call carries at most
# 64 MiB) into .stage/data, a data root triage reads (TRIAGE_DATA=/tmp/stage/data). Idempotent:
# pieces already joined are kept; prints what is there. See tools/gpu_campaign.py.
set -u
# A call's carried paths are replaced by the next call's tree, so each piece is copied out of
# the checkout as it arrives, to a folder the machine keeps while it stays warm.
S=/tmp/stage; D=$S/data
mkdir -p $S
for d in .stage/s*; do [ -d "$d" ] && cp -r "$d" $S/; done
mkdir -p $D/cifar-10 $D/cifar-100 $D/MNIST
join() { # out part1 part2
  [ -s "$1" ] && return 0
  [ -f "$2" ] && [ -f "$3" ] && cat "$2" "$3" > "$1.tmp" && mv "$1.tmp" "$1"
}
join $D/cifar-10/train.npz $S/s1/c10train.part1 $S/s2/c10train.part2
[ -f $S/s2/c10test.npz ] && cp --update=none $S/s2/c10test.npz $D/cifar-10/test.npz
[ -d $S/s2/MNIST/raw ] && cp -r --update=none $S/s2/MNIST/raw $D/MNIST/
join $D/cifar-100/train.npz $S/s3/c100train.part1 $S/s4/c100train.part2
[ -f $S/s4/c100test.npz ] && cp --update=none $S/s4/c100test.npz $D/cifar-100/test.npz
[ -f $S/s5/dogs.tgz ] && [ ! -d $D/stanford-dogs ] && tar -C $D -xzf $S/s5/dogs.tgz
echo "staged: $(cd $D && find . -maxdepth 2 -name '*.npz' -o -maxdepth 2 -name '*.txt' -o -maxdepth 3 -name '*.gz' | sort | tr '\n' ' ')"
md5sum $D/cifar-10/train.npz $D/cifar-100/train.npz 2>/dev/null
exit 0
