#!/bin/sh
# Run a command with a private /data, as Home Assistant's controller expects.
#
#     private-root.sh <scratch-dir> <command> [args...]
#
# The CHIP controller wheel (home-assistant-chip-core) keeps its platform
# configuration in /data/chip_{factory,config,counters}.ini, paths compiled
# into the library for Home Assistant's container. Rather than create /data
# on the machine running the tests, this script is run in a mount namespace
# of its own (`unshare --mount`, inside the test's user and network
# namespaces): it builds a new root on a tmpfs whose top-level entries are
# bind mounts of the real ones, adds an empty /data backed by
# <scratch-dir>, and runs the command chrooted there. Nothing outside the
# namespace changes; everything (the repository, /tmp) stays where it was.
set -eu
scratch=$1
shift
mkdir -p "$scratch/data" "$scratch/root"
new=$scratch/root
mount -t tmpfs latchd-matter-root "$new"
for entry in /* /.[!.]*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    name=${entry#/}
    if [ -L "$entry" ]; then
        ln -s "$(readlink "$entry")" "$new/$name"
    elif [ -d "$entry" ]; then
        mkdir "$new/$name"
        mount --rbind "$entry" "$new/$name"
    else
        touch "$new/$name"
        mount --bind "$entry" "$new/$name"
    fi
done
mkdir "$new/data"
mount --bind "$scratch/data" "$new/data"
cwd=$(pwd)
exec chroot "$new" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@"
